"""The bot's answers, computed off the consumer's thread.

Matching a rule is quick, but data rules call the monitor API and the LLM may
take seconds: a small thread pool does this work so the consumer keeps
consuming. Each client message gets at most one bot reply (a unique marker),
so a redelivered message or a restart never answers twice.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from flask import Flask

from common.auth import Identity
from common.logs import log_event
from support import answers, bot, chat, llm, rules, users
from support.extensions import db
from support.models import Conversation, Message
from support.notify import Broadcaster

logger = logging.getLogger(__name__)
WORKERS = 4
# A rule edited on the rules page takes effect within this many seconds.
RULES_CACHE_SECONDS = 3.0
NO_MATCH_ANSWER = ("I am not sure I understood. I can tell you today's or yesterday's consumption, "
                   "your latest alert, a device's limit or which device uses the most. "
                   "Type \"talk to a human\" to reach an administrator.")
DATA_UNAVAILABLE_ANSWER = ("I cannot reach your consumption data right now. Please try again in a minute, "
                           "or type \"talk to a human\".")
LLM_HANDOFF_ANSWER = "Let me get an administrator to help you with that. They will answer here."
LLM_BUDGET_ANSWER = ("I have answered many questions for you this hour and need a break from the open ones. "
                     "I can still tell you your consumption, alerts and limits, or type \"talk to a human\" "
                     "to reach an administrator.")


class Responder:
    """Answer client messages as the bot, in a worker pool."""

    def __init__(self, app: Flask, broadcaster: Broadcaster, workers: int = WORKERS):
        self.app = app
        self.settings = app.config["EMS_SETTINGS"]
        self.broadcaster = broadcaster
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bot")
        self.llm = llm.LLMClient(self.settings) if llm.llm_enabled(self.settings) else None
        self.llm_budget = llm.CallBudget(self.settings.llm_calls_per_user_per_hour)
        self._rules_lock = threading.Lock()
        self._rules_cache: list[bot.Rule] = []
        self._rules_loaded_at = float("-inf")

    def submit(self, conversation_id: int, message_id: int) -> None:
        """Schedule the bot's answer to one client message."""
        self.pool.submit(self.answer, conversation_id, message_id)

    def answer_pending(self) -> int:
        """Schedule answers to client messages left unanswered by a crash; return how many."""
        last_ids = (sa.select(sa.func.max(Message.id)).where(Message.conversation_id == Conversation.id)
                    .correlate(Conversation).scalar_subquery())
        rows = db.session.execute(
            sa.select(Conversation.id, Message.id).join(Message, Message.id == last_ids)
            .where(Conversation.state == "bot", Message.sender_role == "client")).all()
        for conversation_id, message_id in rows:
            self.submit(conversation_id, message_id)
        return len(rows)

    def shutdown(self) -> None:
        """Finish the answers in progress."""
        self.pool.shutdown(wait=True)

    def answer(self, conversation_id: int, message_id: int) -> None:
        """Answer one client message now, in this thread (the pool runs this)."""
        with self.app.app_context():
            try:
                self.respond(conversation_id, message_id)
            except Exception:  # a crashed worker would silently swallow the error
                db.session.rollback()
                log_event(logger, "support.bot_failed", level=logging.ERROR, exc_info=True,
                          conversation_id=conversation_id, message_id=message_id)
            finally:
                db.session.remove()

    def respond(self, conversation_id: int, message_id: int) -> None:
        """Compute and store the bot's answer to one client message, then emit it."""
        message = db.session.get(Message, message_id)
        conversation = db.session.get(Conversation, conversation_id)
        if message is None or conversation is None or conversation.state != "bot":
            return
        if chat.bot_reply_exists(message_id):
            return
        client = users.client_identity(conversation)
        matched = bot.match(message.body, self._rules(), rules.vocabulary())
        handoff = False
        if matched is None:
            body, handoff = self._fallback(conversation, client, message)
        elif matched.rule.action == "handoff":
            body, handoff = matched.rule.answer, True
        elif matched.rule.action in bot.DATA_ACTIONS:
            body = self._data_answer(matched.rule, client, conversation, message.body)
        else:
            body = matched.rule.answer
        # Lock, then check again: an admin may have taken it while we were thinking.
        conversation = db.session.get(Conversation, conversation_id, with_for_update=True,
                                      populate_existing=True)
        if conversation.state != "bot":
            db.session.rollback()
            return
        reply = chat.post_bot_message(conversation, body, reply_to=message_id)
        if reply is None:
            db.session.rollback()
            return
        changed = chat.hand_off(conversation) if handoff else False
        db.session.commit()
        log_event(logger, "support.bot_answered", conversation_id=conversation_id,
                  rule=matched.rule.name if matched else "-", handoff=handoff)
        self.broadcaster.message(conversation, reply)
        if changed or handoff:
            self.broadcaster.conversation(conversation)

    def immediate_answer(self, text: str) -> tuple[str, bool, str] | None:
        """Return (answer, hand off?, rule) when the answer needs no network, else None.

        Fixed answers and hand-offs are stored with the client's message, in the
        same transaction; data rules and the LLM go to the pool.
        """
        matched = bot.match(text, self._rules(), rules.vocabulary())
        if matched is None:
            return None if self.llm is not None else (NO_MATCH_ANSWER, False, "-")
        if matched.rule.action == "handoff":
            return matched.rule.answer, True, matched.rule.name
        if matched.rule.action in bot.DATA_ACTIONS:
            return None
        return matched.rule.answer, False, matched.rule.name

    def _rules(self) -> list[bot.Rule]:
        """Return the enabled rules, re-read at most every few seconds (admins edit them rarely)."""
        with self._rules_lock:
            if time.monotonic() - self._rules_loaded_at > RULES_CACHE_SECONDS:
                self._rules_cache = rules.enabled_rules()
                self._rules_loaded_at = time.monotonic()
            return self._rules_cache

    def _data_answer(self, rule: bot.Rule, client: Identity, conversation: Conversation, text: str) -> str:
        try:
            devices = answers.fetch_summary(self.settings, client, conversation.client_timezone)
        except answers.SummaryUnavailable:
            return DATA_UNAVAILABLE_ANSWER
        return answers.data_answer(rule.action, rule.answer, text, devices,
                                   answers.client_zone(conversation.client_timezone))

    def _fallback(self, conversation: Conversation, client: Identity, message: Message) -> tuple[str, bool]:
        """Ask the LLM when configured and the client's hourly budget allows; on any failure
        hand the conversation to a human."""
        if self.llm is None:
            return NO_MATCH_ANSWER, False
        if not self.llm_budget.take(client.user_id):
            log_event(logger, "support.llm_budget_spent", conversation_id=conversation.id)
            return LLM_BUDGET_ANSWER, False
        try:
            devices = answers.devices_context(
                answers.fetch_summary(self.settings, client, conversation.client_timezone),
                answers.client_zone(conversation.client_timezone))
        except answers.SummaryUnavailable:
            devices = "Unavailable right now."
        recent, _ = chat.history(conversation, before=message.id + 1, limit=llm.HISTORY_MESSAGES)
        turns = [llm.Turn(m.sender_role, m.body) for m in recent]
        try:
            return self.llm.answer(turns, devices), False
        except llm.LLMUnavailable:
            return LLM_HANDOFF_ANSWER, True
