"""Kernel-side snippets that forge signed Jupyter messages, as model code can: the kernel
holds its own HMAC key, so anything it signs passes the host's signature check."""

# Defines _send_raw(channel, msg_type, content_bytes, parent_bytes=None) in the kernel.
FORGE_PRELUDE = """
_k = get_ipython().kernel
_parent = _k.get_parent('shell')
def _send_raw(channel, msg_type, content, parent=None):
    parts = [_k.session.pack(_k.session.msg_header(msg_type)),
             _k.session.pack(_parent['header']) if parent is None else parent,
             b'{}', content]
    frames = [b'<IDS|MSG>', _k.session.sign(parts), *parts]
    if channel == 'iopub':
        _k.iopub_socket.send_multipart([b'forged', *frames])
    else:
        shell = _k.shell_channel_thread.manager.get_subshell_to_shell_channel_socket(None)
        shell.send_multipart([*_k._parent_ident['shell'], *frames])
"""

# (name, kernel code that sends one malformed but correctly signed message)
MALFORMED = [
    ("stream without text",
     "_send_raw('iopub', 'stream', b'{\"name\": \"stdout\"}')"),
    ("content is a list",
     "_send_raw('iopub', 'display_data', b'[1, 2, 3]')"),
    ("parent header is a string",
     "_send_raw('iopub', 'stream', b'{\"name\": \"stdout\", \"text\": \"x\"}', b'\"oops\"')"),
    ("output invalid for nbformat",
     "_send_raw('iopub', 'display_data', b'{\"data\": {\"text/plain\": 5}, \"metadata\": []}')"),
    ("huge nesting",
     "_send_raw('iopub', 'stream', b'[' * 200000 + b']' * 200000)"),
    ("wrong types in an error",
     "_send_raw('iopub', 'error', b'{\"ename\": 1, \"evalue\": null, \"traceback\": \"tb\"}')"),
]
