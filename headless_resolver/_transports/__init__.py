"""httpx transports that send each request to a pod of a headless Service."""

from headless_resolver._transports._async import HeadlessTransport
from headless_resolver._transports._sync import SyncHeadlessTransport

__all__ = ["HeadlessTransport", "SyncHeadlessTransport"]
