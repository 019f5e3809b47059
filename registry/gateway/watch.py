"""Cancel the handling task when the client goes away, so its upstream request is cancelled.

uvicorn does not cancel an ASGI handler when the client disconnects; it reports
``http.disconnect`` on ``receive`` (and ignores later ``send`` calls). Once the request body
has been read, a small task waits for that message:

- no response body sent yet (the client gave up waiting, e.g. on a slow tool): cancel the
  handler at once; its ``finally`` blocks release the upstream connection, which aborts the
  upstream request;
- some body already sent: MCP clients close a stream as soon as they have read the response
  event, usually a moment before the upstream ends its own stream, so the handler gets
  ``GRACE_SECONDS`` to finish on its own before it is cancelled.

uvicorn also answers ``receive`` with ``http.disconnect`` once the response is complete, so the
watch wraps ``send`` and stands down when the final body message goes out.
"""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Send

GRACE_SECONDS = 2.0


class DisconnectWatch:
    def __init__(
        self, receive: Receive, send: Send, *, grace_seconds: float = GRACE_SECONDS
    ) -> None:
        self.fired = False
        self._grace = grace_seconds
        self._done = False
        self._body_sent = False
        self._inner_send = send
        self._target = asyncio.current_task()
        self._timer: asyncio.TimerHandle | None = None
        self._task = asyncio.get_running_loop().create_task(self._watch(receive))

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            if not message.get("more_body", False):
                self._done = True
            elif message.get("body"):
                self._body_sent = True
        await self._inner_send(message)

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if self._done:
                    return
                if self._body_sent and self._grace > 0:
                    loop = asyncio.get_running_loop()
                    self._timer = loop.call_later(self._grace, self._cancel)
                else:
                    self._cancel()
                return

    def _cancel(self) -> None:
        if not self._done and self._target is not None:
            self.fired = True
            self._target.cancel()

    def stop(self) -> None:
        self._done = True
        self._task.cancel()
        if self._timer is not None:
            self._timer.cancel()
