"""The loop's control channel: the process that runs a loop (`ratchet run`, or one the
language server started in a session of its own) serves it on a unix socket under
`.ratchet/`; the language server attaches to it, follows its events and sends commands, and
detaches without stopping it.

wire    the socket's place and framing (JSON lines), experiments and events as JSON
host    the loop's side: requests → Engine calls, engine events → every attached client
run     a loop's run with the channel open (`ratchet run`, and the loop an editor starts)
client  the editor's side: requests with replies, events as they come, the end noticed
spawn   starting a loop process that outlives its parent; who holds the project's lock
"""
