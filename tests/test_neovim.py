"""The server's face in an editor that is not VS Code: Neovim's built-in LSP client (Debian's
neovim 0.7), headless, starts a loop with the review gate on, and sees what the server alone
provides: the proposal's code lenses (through vim.lsp.codelens), its ghost text and the
history as inlay hints (a plain textDocument/inlayHint request: 0.7 has no inlay-hint UI),
the proposal as a one-line diagnostic, and the judged result as a Hint diagnostic on the line
it changed (the publishDiagnostics notification as sent, and Neovim's view of it). The Lua
script writes what it saw to a file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import CONFIG, MakeProject
from lsp_helpers import expected_head, stop_loops

REVIEWED = CONFIG.replace('budget = "10s"', 'budget = "10s"\nreview = "propose"')
DEADLINE_S = 90

INIT_LUA = r"""
local out_path = os.getenv("RATCHET_NVIM_OUT")
local root = os.getenv("RATCHET_NVIM_ROOT")
local seen = { statuses = 0, steps = {} }

local function finish(err)
  seen.error = err
  local file = io.open(out_path, "w")
  file:write(vim.fn.json_encode(seen))
  file:close()
  vim.cmd("qa!")
end

local t0 = vim.loop.now()
local function step(name) table.insert(seen.steps, name .. " " .. (vim.loop.now() - t0)) end

local ok, err = pcall(function()
  vim.lsp.set_log_level("ERROR")
  local last_status = nil
  local published = {} -- uri -> Ratchet's diagnostics in the latest publishDiagnostics, as sent
  local client_id = vim.lsp.start_client({
    name = "ratchet",
    cmd = { os.getenv("RATCHET_NVIM_PYTHON"), "-m", "ratchet.cli", "serve" },
    cmd_cwd = root,
    root_dir = root,
    handlers = {
      ["ratchet/status"] = function(_, result)
        last_status = result
        seen.statuses = seen.statuses + 1
      end,
      ["textDocument/publishDiagnostics"] = function(err, result, ctx, config)
        local mine = {}
        for _, d in ipairs(result.diagnostics) do
          if d.source == "ratchet" then
            table.insert(mine, { message = d.message, severity = d.severity, code = d.code,
              line = d.range.start.line, kind = d.data and d.data.kind,
              experiment = d.data and d.data.experiment })
          end
        end
        published[result.uri] = mine
        return vim.lsp.diagnostic.on_publish_diagnostics(err, result, ctx, config)
      end,
    },
  })
  assert(client_id, "the server did not start")
  vim.cmd("edit " .. root .. "/train.py")
  local bufnr = vim.api.nvim_get_current_buf()
  vim.lsp.buf_attach_client(bufnr, client_id)
  local client = vim.lsp.get_client_by_id(client_id)
  assert(vim.wait(20000, function()
    return client.server_capabilities ~= nil and last_status ~= nil
  end, 50), "the server never initialized")
  step("initialized")
  seen.code_lens_provider = client.server_capabilities.codeLensProvider ~= nil
  seen.inlay_hint_provider = client.server_capabilities.inlayHintProvider ~= nil

  local started = client.request_sync("workspace/executeCommand",
    { command = "ratchet.start", arguments = {} }, 30000, bufnr)
  assert(started and not started.err, "ratchet.start failed: " .. vim.inspect(started))
  step("started")
  assert(vim.wait(40000, function()
    return last_status and last_status.awaitingReview and #last_status.awaitingReview > 0
  end, 50), "no proposal came to review")
  seen.awaiting = last_status.awaitingReview
  seen.loop = last_status.loop
  step("awaiting")

  -- Lenses, the way a user's config asks for them.
  assert(vim.wait(10000, function()
    vim.lsp.codelens.refresh()
    vim.wait(200)
    return #vim.lsp.codelens.get(bufnr) > 0
  end, 100), "no code lens")
  seen.lenses = {}
  for _, lens in ipairs(vim.lsp.codelens.get(bufnr)) do
    table.insert(seen.lenses, {
      title = lens.command.title, command = lens.command.command,
      arguments = lens.command.arguments, line = lens.range.start.line,
    })
  end
  step("lenses")

  -- Hints: a plain request (0.7 shows none itself).
  local lines = vim.api.nvim_buf_line_count(bufnr)
  local hints = client.request_sync("textDocument/inlayHint", {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    range = { start = { line = 0, character = 0 }, ["end"] = { line = lines, character = 0 } },
  }, 10000, bufnr)
  seen.hints = {}
  for _, hint in ipairs((hints and hints.result) or {}) do
    table.insert(seen.hints, { label = hint.label, line = hint.position.line,
      character = hint.position.character, kind = hint.data and hint.data.kind })
  end
  step("hints")

  assert(vim.wait(10000, function() return #vim.diagnostic.get(bufnr) > 0 end, 50),
    "no diagnostic")
  seen.diagnostics = {}
  for _, d in ipairs(vim.diagnostic.get(bufnr)) do
    table.insert(seen.diagnostics, { message = d.message, line = d.lnum, severity = d.severity })
  end

  -- The Accept & Run lens's command, run as the lens would run it.
  local accept = seen.lenses[1]
  local accepted = client.request_sync("workspace/executeCommand",
    { command = accept.command, arguments = accept.arguments }, 10000, bufnr)
  seen.accepted = accepted and accepted.result
  assert(vim.wait(40000, function()
    return last_status and last_status.total >= 2
  end, 50), "the accepted proposal never finished")
  step("judged")

  -- The status can arrive before the results' refresh: the hints are asked again (to a
  -- deadline) until the judged experiment's result is among them.
  vim.wait(10000, function()
    local history = client.request_sync("textDocument/inlayHint", {
      textDocument = { uri = vim.uri_from_bufnr(bufnr) },
      range = { start = { line = 0, character = 0 }, ["end"] = { line = lines, character = 0 } },
    }, 10000, bufnr)
    seen.history = {}
    local judged = false
    for _, hint in ipairs((history and history.result) or {}) do
      local kind = hint.data and hint.data.kind
      table.insert(seen.history, { label = hint.label, kind = kind })
      judged = judged or (kind == "result" and hint.label:sub(1, 6) == "exp 1 ")
    end
    return judged
  end, 100)
  -- The judged result is a diagnostic too, at Hint severity (a subtle mark, not a problem):
  -- in what the server published, and in what Neovim made of it.
  local uri = vim.uri_from_bufnr(bufnr)
  vim.wait(10000, function()
    for _, d in ipairs(published[uri] or {}) do
      if d.kind == "result" and d.experiment == 1 then return true end
    end
    return false
  end, 50)
  seen.published = published[uri] or {}
  vim.wait(10000, function()
    seen.results = {}
    for _, d in ipairs(vim.diagnostic.get(bufnr)) do
      if d.source == "ratchet" and d.message:sub(1, 6) == "exp 1 "
          and not d.message:find("proposed") then
        table.insert(seen.results, { message = d.message, severity = d.severity, line = d.lnum })
      end
    end
    return #seen.results > 0
  end, 100)
  local rows = client.request_sync("workspace/executeCommand",
    { command = "ratchet.experiments", arguments = {} }, 10000, bufnr)
  seen.experiments = rows and rows.result
  client.request_sync("workspace/executeCommand", { command = "ratchet.stop" }, 40000, bufnr)
  step("stopped")
end)
finish(ok and vim.NIL or tostring(err))
"""


def test_neovim_sees_the_lenses_and_hints(make_project: MakeProject, tmp_path: Path) -> None:
    nvim = shutil.which("nvim")
    assert nvim, "Neovim is missing: install it with scripts/install-test-deps.sh (Debian neovim)"
    root = make_project(config=REVIEWED)
    init = tmp_path / "init.lua"
    init.write_text(INIT_LUA)
    out = tmp_path / "seen.json"
    home = tmp_path / "nvim-home"
    env = {
        **os.environ,
        "RATCHET_NVIM_OUT": str(out),
        "RATCHET_NVIM_ROOT": str(root),
        "RATCHET_NVIM_PYTHON": sys.executable,
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    try:
        done = subprocess.run(
            [nvim, "--headless", "-i", "NONE", "--noplugin", "-u", str(init)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            stdin=subprocess.DEVNULL,
        )
    finally:
        stop_loops(root)
    assert out.exists(), f"nvim wrote nothing (exit {done.returncode}): {done.stderr[-2000:]}"
    seen = json.loads(out.read_text())
    print(seen["steps"])
    assert seen["error"] is None, seen
    assert seen["code_lens_provider"] and seen["inlay_hint_provider"]
    assert seen["awaiting"] == [1] and seen["loop"]["attached"] is True

    lenses = seen["lenses"]
    assert [(lens["title"], lens["command"]) for lens in lenses] == [
        ("Accept & Run exp 1", "ratchet.accept"),
        ("Reject", "ratchet.reject"),
        ("Open diff", "ratchet.openDiff"),
    ]
    assert lenses[0]["arguments"] == [1] and lenses[2]["arguments"][0]["experiment"] == 1
    text = (root / "train.py").read_text().splitlines()
    line = lenses[0]["line"]
    assert text[line].startswith(("LR = ", "WIDTH = "))  # over the line it would change

    (ghost,) = [h for h in seen["hints"] if h["kind"] == "proposal"]
    assert ghost["label"].startswith("→ ") and ghost["line"] == line
    assert ghost["character"] == len(text[line])  # at the end of the line
    (proposal,) = [d for d in seen["diagnostics"] if d["message"].startswith("exp 1 proposed: ")]
    assert "\n" not in proposal["message"] and proposal["line"] == line

    assert seen["accepted"] == {"experiment": 1, "accepted": True}
    results = [h for h in seen["history"] if h["kind"] == "result"]
    assert any(h["label"].startswith("exp 1 ") for h in results), seen["history"]
    # The judged result as a diagnostic at Hint severity (4) on the line its change touched,
    # with the metric, its change against the base and the verdict: as the server published it
    # (source "ratchet") and as Neovim shows it.
    judged = next(e for e in seen["experiments"] if e["id"] == 1)
    assert judged["status"] in ("kept", "discarded"), judged
    head = expected_head(judged, seen["experiments"])
    (published,) = [d for d in seen["published"] if d["kind"] == "result"]
    assert published["experiment"] == 1 and published["severity"] == 4, seen["published"]
    assert published["message"].startswith(head) and published["code"] == judged["status"]
    assert published["line"] == line, (published, text[line])
    (result,) = seen["results"]
    assert result["severity"] == 4 and result["message"] == published["message"]
    assert result["line"] == line
