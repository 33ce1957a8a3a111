"""kombu's file-system transport, with messages written atomically.

The stock transport creates the message file and then writes it, and its reader does not wait for the
writer's lock: a worker polling at the wrong moment reads an empty file, fails to decode it and drops the
message. The sweeper would re-send the work, but the embedded default should not lose messages routinely:
here a message is written under a name no reader looks at, then renamed into place in one step.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.part")  # never matches a queue's pattern
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # No host: a folder needs none (the virtual transports' default 'localhost' makes kombu warn
        # "No hostname was supplied" at every start).
        return {"port": self.default_port}
