"""The feedback receiver over AMQP: `/messages/serviceBound/feedback` hands out the hub's
feedback batches, one message each, and settles them by the client's disposition (accepted
or rejected: done; released or modified: back in the queue)."""

from __future__ import annotations

from proton import Delivery, Endpoint, Link, Message

from ..hub.feedback import CONTENT_TYPE, Feedback
from .connection import AmqpConnection


class FeedbackSender:
    def __init__(self, feedback: Feedback, hub_name: str) -> None:
        self.feedback = feedback
        self.hub_name = hub_name

    def attach(self, conn: AmqpConnection, link: Link) -> None:
        link.open()

        def pump() -> None:
            while not conn.closed and link.state & Endpoint.LOCAL_ACTIVE and link.credit > 0:
                batch = self.feedback.take()
                if batch is None:
                    break
                msg = Message(body=batch.body, content_type=CONTENT_TYPE, user_id=self.hub_name.encode())
                msg.inferred = True
                msg.id = batch.lock_token
                token = batch.lock_token

                def settled(dlv: Delivery, token: str = token) -> None:
                    if dlv.remote_state in (Delivery.ACCEPTED, Delivery.REJECTED):
                        self.feedback.complete(token)
                    else:
                        self.feedback.abandon(token)

                conn.send(link, msg.encode(), settled)
            conn.flush()

        unsubscribe = self.feedback.on_available(pump)
        conn.on_flow(link, pump)
        conn.on_link_closed(link, unsubscribe)
        pump()
