"""Telling every replica of committed changes, and confirming the ones that take access away.

A change that takes access away (key rotation, disabling, deleting an integration) must reach
every replica before it is reported done: before committing one, the change feed must accept a
publish (else 503 and nothing changes); after committing, the change must be confirmed (else
503 `change-not-confirmed`: the change stands, the feed keeps re-sending it, and replicas that
could not hear it stop trusting their caches within about two seconds). Other changes are
published on a best-effort basis: caches expire on their TTL meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any

from settings_api.changes import Change, ChangeFeed, ChangeUndelivered, FeedUnavailable
from settings_api.problems import ChangeFeedUnavailable, ChangeNotConfirmed

log = logging.getLogger(__name__)


class ChangePublisher:
    """Publishes the use cases' committed changes to the replicas through `feed`."""

    def __init__(self, feed: ChangeFeed) -> None:
        self.feed = feed

    async def require_feed(self) -> None:
        """Before committing a change that takes access away: 503, with nothing changed, when
        the replicas could not be told of it now."""
        try:
            await self.feed.check()
        except FeedUnavailable as exc:
            log.warning("refusing a revoking change: %s", exc)
            raise ChangeFeedUnavailable(
                "the gateway replicas cannot be told of changes right now (the change feed "
                "does not accept messages), so they could keep honouring the key; nothing "
                "was changed; retry shortly"
            ) from exc

    async def publish_revocation(self, change: Change, done: str, **extensions: Any) -> None:
        """Publish a committed change that takes access away; 503 when it is not confirmed
        (`done` says what stands; `extensions` go into the problem, e.g. the new key)."""
        try:
            await self.feed.publish(change)
        except ChangeUndelivered as exc:
            log.warning(
                "revoking change for %s/%s not confirmed: %s",
                change.tenant_id,
                change.integration_id,
                exc,
            )
            raise ChangeNotConfirmed(
                f"{done}, but not every gateway replica could be told yet (the change feed "
                "stopped accepting messages); the change is re-sent until it is, and every "
                "replica applies it within about 2 s of the feed working again",
                **extensions,
            ) from exc

    async def publish(self, change: Change) -> None:
        """Publish a committed change that takes nothing away; failures are only logged."""
        try:
            await self.feed.publish(change)
        except ChangeUndelivered as exc:
            # Committed already, and nothing was taken away: the feed re-sends it, and
            # caches expire on their TTL meanwhile.
            log.warning(
                "change for %s/%s not confirmed yet: %s",
                change.tenant_id,
                change.integration_id,
                exc,
            )
        except Exception:
            # Committed already: replicas' caches still expire on their TTL.
            log.warning(
                "could not publish change for %s/%s",
                change.tenant_id,
                change.integration_id,
                exc_info=True,
            )
