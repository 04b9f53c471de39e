"""ZeroMQ transport: request/reply (`Server`, `Client`) and streams (`Publisher`, `Subscriber`).

Every frame on the bus is an `amiagent.messages` envelope, validated on both
ends. Endpoints are `inproc://name` (one process; every socket must share a
context, hence `default_context()`), `ipc:///path` (one host) or
`tcp://host:port` (across hosts). A server bound to `tcp://host:0` or
`tcp://host:*` picks a free port, and one bound to `ipc://*` gets a socket file
in a fresh temporary directory; `Server.endpoint` gives the resolved address.

Request/reply framing: the client's DEALER sends `[request_id, payload]`; the
server's ROUTER sees `[identity, request_id, payload]` and answers
`[identity, request_id, reply]`. A request id is 8 opaque bytes; a plain REQ
socket also works (its empty delimiter frame plays the request id).

Threads: zmq sockets are not thread-safe, so one I/O thread owns the ROUTER.
Handlers run on a small pool (`workers`); `inline=True` runs the handler on the
I/O thread itself, which saves two thread hops per request and suits handlers
that take microseconds. Workers hand their replies back, and `close()` its stop
signal, through a private inproc endpoint that the same ROUTER also binds, so
the I/O thread waits in one blocking receive rather than polling two sockets.

Hot path: at a few thousand requests a second every microsecond counts, so
frames go through `_recv_frames` / `_send_frames` rather than pyzmq's
`recv_multipart` / `send_multipart`, whose per-frame option lookups cost more
than the rest of a small request.

The package: `sockets` (frames, endpoints, context), `server`, `client`,
`streams`, and `rpc` (proxies and dispatch derived from the contract
declarations; import it as `amiagent.bus.rpc`, it needs torch).
"""

from amiagent.bus.client import Client
from amiagent.bus.server import Server
from amiagent.bus.sockets import Handler, _recv_frames, _send_frames, default_context, ipc_endpoint
from amiagent.bus.streams import Publisher, Subscriber

__all__ = ["Client", "Handler", "Publisher", "Server", "Subscriber", "default_context", "ipc_endpoint"]
