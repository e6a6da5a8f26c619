"""The language server: the loop in the editor's protocol (pygls), a thin face on the engine.

server      the pygls server: features and commands, wired to one Session per project
session     the project as the editor sees it: config, engine, runs, events in, LSP out
commands    workspace/executeCommand arguments → Session calls → JSON-able results
diagnostics results, proposals, crashes, config and locked-file mistakes → Diagnostics
actions     code actions on those diagnostics (accept/reject, apply, revert, open diff)
textops     pure text work: diff blocks, locating them by content, 3-way merge, TextEdits
progress    work-done progress per running experiment, throttled, cancellable
status      the coalesced `ratchet/status` notification
watcher     watchdog: files changing under the loop
"""
