"""The language server: the loop in the editor's protocol (pygls), a thin face on the engine.
The loop itself runs in a process of its own (see ratchet.control); the server attaches to it.

server         the pygls server: features and commands wired to one Session; sends guarded
session        the features wired together, the status they make, the editor's commands
commands       workspace/executeCommand arguments → Session calls → JSON-able results
names          every command, notification and request name of the contract, in one place
editor         the narrow client interface the features use (documents, sends, capabilities)
project        what the features share: folder, ratchet.toml, the ledger reader
configuration  ratchet.toml: read, checked as typed, handed to a running loop
loop           the loop's process: attach, follow its events, command it, detach
results        the rows, proposals and results, placed in the text; what is fetched ahead
files          documents and files on disk: each change to the feature it concerns
applying       an experiment into the user's file; diffs for clients to show
placement      pure: where proposals and results sit in the text the user has now
marks          pure: placements → diagnostics, inlay hints, code lenses
diagnostics    pure: words for results; ratchet.toml and locked-file mistakes
actions        code actions (accept/reject, apply, revert, open diff, run this file)
textops        pure text work: diff blocks, locating them by content, 3-way merge, TextEdits
progress       work-done progress per running experiment, throttled, cancellable
status         the coalesced `ratchet/status` notification
watcher        watchdog: files changing under the loop
"""
