"""The command agent's own sandbox (bubblewrap, through runners/sandbox.py).

A CLI coding agent reads whatever it likes. Inside, it sees its scratch copy read-write and
its prompt file read-only; the rest of the file system read-only; and not at all: the user's
repository and its git folder, the project (so `.ratchet/`: the ledger, the clean rooms, the
other slots' worktrees, the labels), `$HOME` (a private empty one, with the agent's declared
config folders bound back) and `/tmp`. Unlike a run it keeps the network (its model is
there) and its API key. `[sandbox] kind = "none"` opts it out with the runs.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..errors import RatchetError
from ..runners.host_private import inside, outermost, repository_folders
from ..runners.sandbox import (
    SandboxSpec,
    build_argv,
    clean_env,
    expand,
    find_bwrap,
    probe,
    toolchain_folders,
)

# What the agent's model client needs besides its key: where the API is, and a proxy.
AGENT_VARIABLES = (
    "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL",
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
)  # fmt: skip


@dataclass(frozen=True)
class AgentSandbox:
    """What the agent may see besides its scratch copy, as absolute paths."""

    hide: tuple[str, ...]  # the repository, its git folder, the project
    secret_files: tuple[str, ...] = ()  # never visible, whatever is bound back (labels)
    read: tuple[str, ...] = ()  # its tools and config, read-only
    write: tuple[str, ...] = ()  # its config and caches
    env: tuple[str, ...] = ()  # variables it receives besides AGENT_VARIABLES and its key
    program: str = ""  # its program: one given by an absolute path brings its folder back
    files: tuple[str, ...] = ()  # files its command names by absolute path (its script)

    @classmethod
    def from_config(
        cls,
        config: Config,
        hidden_files: Sequence[str],
        *,
        run: str | None = None,
        write: Sequence[str] = (),
        env: Sequence[str] = (),
    ) -> AgentSandbox | None:
        """None when `[sandbox] kind = "none"`: the agent runs as Ratchet does. A preset
        (claude-code) gives its own `run`, its config folders to `write` and its variables."""
        if config.sandbox.kind == "none":
            return None
        root = config.root.resolve()
        home = os.path.expanduser("~")
        agent = config.agent
        words = shlex.split(run if run is not None else agent.run or "")
        return cls(
            hide=tuple(str(p) for p in {root, *repository_folders(root)}),
            secret_files=tuple(str(root / p) for p in hidden_files),
            read=expand(agent.sandbox_read, home),
            write=expand([*agent.sandbox_write, *write], home),
            env=(agent.api_key_env, *agent.sandbox_env, *env),
            program=words[0] if words else "",
            files=tuple(w for w in words[1:] if os.path.isabs(w) and os.path.isfile(w)),
        )

    def wrap(
        self,
        argv: list[str],
        project: Path,
        prompt_file: Path,
        environ: Mapping[str, str],
        extra: Mapping[str, str],
    ) -> tuple[list[str], dict[str, str]]:
        """The sandboxed command line and its environment; RatchetError when no sandbox can
        start here (the proposal fails with the reason, the loop goes on)."""
        bwrap = find_bwrap()
        problem = probe(bwrap)
        if problem or bwrap is None:
            raise RatchetError(f"the command agent cannot be sandboxed: {problem}")
        home = os.path.expanduser("~")
        hidden = (*self.hide, home, "/tmp")
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
        # Its program's installation, not the folders of its other arguments (declare those).
        program = shlex.quote(self.program) if self.program else ""
        tools = toolchain_folders(hidden, environ.get("PATH", ""), prefixes, program)
        spec = SandboxSpec(
            bwrap=bwrap,
            run_dir=str(project.resolve()),
            hide=tuple(self.hide),
            home=home,
            read=tuple(self.visible([*tools, *self.read])),
            write=tuple(self.visible(p for p in self.write if os.path.lexists(p))),
            network=True,
            binds=((str(prompt_file), str(prompt_file)), *((f, f) for f in self.named_files())),
            devices=(),
        )
        env = clean_env(environ, [*AGENT_VARIABLES, *self.env], extra)
        env["HOME"] = home
        return build_argv(spec, argv), env

    def named_files(self) -> list[str]:
        """The files the command names (`python /home/u/agent.py`), bound back read-only one
        by one: not one inside the repository, the project or a secret."""
        guarded = [*self.hide, *self.secret_files]
        return [f for f in map(os.path.normpath, self.files) if not inside(f, guarded)]

    def visible(self, folders: Iterable[str]) -> list[str]:
        """The folders that may be bound back: none that holds a hidden folder or a secret
        file (binding it would bring them back), none inside `.ratchet/`."""
        guarded = [*self.hide, *self.secret_files]
        kept = []
        for folder in (os.path.normpath(f) for f in folders if f):
            inside = folder.rstrip("/") + "/"
            if any(g == folder or g.startswith(inside) for g in guarded):
                continue
            if any(folder.startswith(h.rstrip("/") + "/.ratchet") for h in self.hide):
                continue
            kept.append(folder)
        return outermost(kept)
