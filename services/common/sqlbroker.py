"""The embedded broker: kombu's SQLAlchemy transport on SQLite, polling more often.

kombu's virtual transports look for a new message once a second when the queue is idle, so
an upload would wait half a second on average before a worker sees it. This transport reads
its polling interval from the transport option `polling_interval` (`workers.polling_interval_s`)
and, unlike kombu's own SQLAlchemy channel, does not hand the transport options to
`create_engine` (which refuses keys it does not know). Named by `services.common.queue` as
`broker_transport`; imported by kombu only when the embedded broker is in use.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import sqlalchemy
from sqlalchemy import create_engine


class Channel(sqlalchemy.Channel):
    def _engine_from_config(self) -> Any:
        return create_engine(self.connection.client.hostname)


class Transport(sqlalchemy.Transport):
    Channel = Channel
