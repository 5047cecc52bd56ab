// The support chat: the client's widget and the admin inbox's conversation pane.
// Both are a `.chat-thread` element (data-conversation-id, data-viewer-role,
// data-seen-id); messages travel over the page's one Socket.IO connection
// (window.ems.socket). The server renders every message (support/_message.html):
// a `chat:message` event carries the rendered, escaped item in `html`, which this
// script only inserts; a state change fetches the header again from the server, so
// labels and the Take/Resolve rules live in the templates alone.
(function () {
  "use strict";

  const TYPING_EXPIRES_MS = 5000; // an indicator without a refresh disappears after this
  const TYPING_REFRESH_MS = 2000; // how often a typing user re-announces it
  const SEND_TIMEOUT_MS = 10000;
  const OPEN_KEY = "ems.chat.open";
  let socket = null;
  let everConnected = false;
  let lastTypingSent = 0;
  const typingTimers = new Map();

  function threads() {
    return Array.from(document.querySelectorAll(".chat-thread"));
  }

  function threadFor(conversationId) {
    return threads().find((t) => t.dataset.conversationId === String(conversationId)) || null;
  }

  function isAdmin(thread) {
    return thread.dataset.viewerRole === "admin";
  }

  // "Ours" is this side of the conversation: the client, or the administrators.
  function isOurs(thread, role) {
    return isAdmin(thread) ? role === "admin" : role === "client";
  }

  function isWidget(thread) {
    return thread.id === "chat-widget";
  }

  function isVisible(thread) {
    if (document.visibilityState !== "visible") return false;
    if (!isWidget(thread)) return true;
    const panel = thread.querySelector(".chat-panel");
    return panel && !panel.hidden;
  }

  function timeLabel(iso) {
    const date = iso ? new Date(iso) : new Date();
    // 24-hour clock in the viewer's zone (their Profile's, named by the layout), like the server's times.
    const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    try {
      return date.toLocaleTimeString([], { ...options, timeZone: document.body.dataset.viewerTimezone || undefined });
    } catch (error) {
      return date.toLocaleTimeString([], options); // a zone this browser does not know
    }
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The item the server rendered for a `chat:message` event, with its time in this browser's zone
  // (the consumer that renders it serves every viewer, so it writes UTC).
  function renderedMessage(message) {
    const template = document.createElement("template");
    template.innerHTML = message.html.trim();
    const item = template.content.firstElementChild;
    item.querySelectorAll("time[datetime]").forEach((time) => { time.textContent = timeLabel(time.dateTime); });
    return item;
  }

  // A message of ours on its way: the page's template of an item (rendered from the same
  // support/_message.html), filled with the text as typed.
  function pendingMessage(thread, body, clientMessageId) {
    const item = thread.querySelector("template.chat-pending-template").content.firstElementChild.cloneNode(true);
    item.querySelector(".chat-body").textContent = body;
    item.dataset.clientMessageId = clientMessageId;
    return item;
  }

  function scrollToEnd(thread) {
    const list = thread.querySelector(".chat-messages");
    if (list) list.scrollTop = list.scrollHeight;
  }

  // Put "Seen" under the last message of ours that the other side has read.
  function updateSeen(thread) {
    const seenId = Number(thread.dataset.seenId || 0);
    thread.querySelectorAll(".chat-seen").forEach((node) => node.remove());
    const ours = Array.from(thread.querySelectorAll(".chat-message[data-message-id]"))
      .filter((item) => isOurs(thread, item.dataset.senderRole) && Number(item.dataset.messageId) <= seenId);
    const last = ours[ours.length - 1];
    if (last) last.append(element("span", "chat-seen", "Seen"));
  }

  function lastTheirs(thread) {
    const theirs = Array.from(thread.querySelectorAll(".chat-message[data-message-id]"))
      .filter((item) => !isOurs(thread, item.dataset.senderRole));
    return theirs.length ? Number(theirs[theirs.length - 1].dataset.messageId) : 0;
  }

  // Tell the other side how far we have read, once per new message.
  function markRead(thread) {
    if (!socket || !isVisible(thread)) return;
    const messageId = lastTheirs(thread);
    if (!messageId || messageId <= Number(thread.dataset.readId || 0)) return;
    thread.dataset.readId = messageId;
    socket.emit("chat:read", { conversation_id: Number(thread.dataset.conversationId), message_id: messageId });
    setUnread(thread, 0);
    // Support stores the receipt asynchronously; then this admin's unread count drops.
    if (isAdmin(thread)) refreshInbox(600);
  }

  function setUnread(thread, count) {
    const badge = thread.querySelector(".chat-unread");
    if (!badge) return;
    badge.textContent = count;
    badge.hidden = count <= 0;
  }

  // The state label (and, in the inbox, the buttons that follow the state) as the server
  // renders them: fetched again from the thread's own page, only that part swapped.
  function setState(thread, row) {
    thread.dataset.state = row.state;
    const part = isWidget(thread) ? ".chat-header .chat-state" : ".chat-header";
    const target = thread.querySelector(part);
    if (!target) return;
    const url = isWidget(thread) ? "/support/widget" : "/support/conversations/" + thread.dataset.conversationId;
    htmx.ajax("GET", url, { target, select: part, swap: "outerHTML" });
  }

  function hideTyping(thread) {
    const indicator = thread.querySelector(".chat-typing");
    if (indicator) indicator.hidden = true;
    clearTimeout(typingTimers.get(thread.dataset.conversationId));
  }

  function showError(thread, text) {
    const error = thread.querySelector(".chat-error");
    if (!error) return;
    error.textContent = text;
    error.hidden = !text;
  }

  function appendMessage(thread, message) {
    const list = thread.querySelector(".chat-messages");
    if (!list || list.querySelector(`[data-message-id="${message.id}"]`)) return;
    const item = renderedMessage(message);
    const pending = message.client_message_id &&
      list.querySelector(`.chat-message.pending[data-client-message-id="${CSS.escape(message.client_message_id)}"]`);
    if (pending) pending.replaceWith(item); else list.append(item);
    list.querySelectorAll(".chat-empty").forEach((node) => node.remove());
    if (!isOurs(thread, message.sender_role)) {
      hideTyping(thread);
      if (isVisible(thread)) markRead(thread);
      else setUnread(thread, Number(thread.querySelector(".chat-unread")?.textContent || 0) + 1);
    }
    updateSeen(thread);
    scrollToEnd(thread);
  }

  function newClientMessageId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function emitSend(thread, item, payload) {
    item.classList.remove("failed");
    item.classList.add("pending");
    socket.timeout(SEND_TIMEOUT_MS).emit("chat:send", payload, (timeout, ack) => {
      if (!timeout && ack && ack.ok) return; // the stored message replaces the pending one
      item.classList.add("failed");
      showError(thread, (ack && ack.error) || "Not sent. Click the message to try again.");
      // A retry reuses the same id, so support stores it once however often it arrives.
      item.addEventListener("click", () => { showError(thread, ""); emitSend(thread, item, payload); }, { once: true });
    });
  }

  function send(thread) {
    const field = thread.querySelector(".chat-form textarea");
    const body = field.value.trim();
    if (!body || !socket) return;
    if (body.length > 2000) { showError(thread, "A message is limited to 2000 characters."); return; }
    showError(thread, "");
    const payload = { client_message_id: newClientMessageId(), body };
    if (isAdmin(thread)) payload.conversation_id = Number(thread.dataset.conversationId);
    const item = pendingMessage(thread, body, payload.client_message_id);
    thread.querySelector(".chat-messages").append(item);
    thread.querySelectorAll(".chat-empty").forEach((node) => node.remove());
    scrollToEnd(thread);
    field.value = "";
    lastTypingSent = 0;
    emitSend(thread, item, payload);
  }

  function announceTyping(thread) {
    const now = Date.now();
    if (!socket || now - lastTypingSent < TYPING_REFRESH_MS) return;
    lastTypingSent = now;
    socket.emit("chat:typing", { conversation_id: Number(thread.dataset.conversationId) });
  }

  function setOpen(widget, open) {
    const panel = widget.querySelector(".chat-panel");
    const toggle = widget.querySelector(".chat-toggle");
    panel.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    sessionStorage.setItem(OPEN_KEY, open ? "1" : "");
    if (open) {
      scrollToEnd(widget);
      markRead(widget);
      widget.querySelector(".chat-form textarea").focus();
    }
  }

  // Wire a freshly swapped-in thread (the widget or an inbox pane).
  function initThread(thread) {
    if (thread.dataset.ready) return;
    thread.dataset.ready = "1";
    updateSeen(thread);
    scrollToEnd(thread);
    if (isWidget(thread)) {
      thread.querySelector(".chat-toggle").addEventListener("click", () => {
        setOpen(thread, thread.querySelector(".chat-panel").hidden);
      });
      thread.querySelector(".chat-close").addEventListener("click", () => setOpen(thread, false));
      if (sessionStorage.getItem(OPEN_KEY)) setOpen(thread, true);
    } else {
      markRead(thread);
      document.querySelectorAll(".inbox-row").forEach((row) => {
        row.classList.toggle("selected", row.dataset.conversationId === thread.dataset.conversationId);
      });
    }
    const form = thread.querySelector(".chat-form");
    const field = form.querySelector("textarea");
    form.addEventListener("submit", (event) => { event.preventDefault(); send(thread); });
    field.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        send(thread);
      }
    });
    field.addEventListener("input", () => { if (field.value.trim()) announceTyping(thread); });
  }

  function initAll(root) {
    const scope = root || document;
    if (scope.classList && scope.classList.contains("chat-thread")) initThread(scope);
    scope.querySelectorAll && scope.querySelectorAll(".chat-thread").forEach(initThread);
  }

  let refreshTimer = null;
  // The inbox list is rendered by the server (with this admin's unread counts).
  function refreshInbox(delay) {
    if (!document.getElementById("inbox-list")) return;
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => htmx.trigger(document.body, "inbox-refresh"), delay || 150);
  }

  // The refreshed inbox list keeps the open conversation highlighted: send its id
  // (here, not in a js: hx-vals, which the Content-Security-Policy's no-eval forbids).
  document.addEventListener("htmx:configRequest", (event) => {
    if (!event.detail.elt.hasAttribute("data-sends-selected-conversation")) return;
    const thread = document.querySelector("#conversation-pane .chat-thread");
    event.detail.parameters.selected = (thread && thread.dataset.conversationId) || "";
  });

  function refreshWaitingTimes() {
    document.querySelectorAll(".inbox-waiting[data-since]").forEach((node) => {
      const minutes = Math.max(0, Math.floor((Date.now() - new Date(node.dataset.since)) / 60000));
      node.textContent = "waiting " + (minutes < 60 ? minutes + " min"
        : Math.floor(minutes / 60) + " h " + (minutes % 60) + " min");
    });
  }

  // After a reconnect we may have missed messages: render the threads again.
  function reloadThreads() {
    const widget = document.getElementById("chat-widget");
    if (widget) htmx.ajax("GET", "/support/widget", { target: widget, swap: "outerHTML" });
    const pane = document.querySelector("#conversation-pane .chat-thread");
    if (pane) htmx.ajax("GET", "/support/conversations/" + pane.dataset.conversationId,
                        { target: "#conversation-pane", swap: "innerHTML" });
    refreshInbox();
  }

  function bind(newSocket) {
    if (!newSocket || socket === newSocket) return;
    socket = newSocket;
    socket.on("connect", () => {
      if (everConnected) reloadThreads();
      everConnected = true;
    });
    socket.on("chat:message", (message) => {
      const thread = threadFor(message.conversation_id);
      // An event without its rendered item (from a consumer of before the change, during
      // a rolling update): the server renders the threads again.
      if (thread && !message.html) reloadThreads();
      else if (thread) appendMessage(thread, message);
      refreshInbox();
    });
    socket.on("chat:typing", (typing) => {
      const thread = threadFor(typing.conversation_id);
      if (!thread || isOurs(thread, typing.sender_role)) return;
      const indicator = thread.querySelector(".chat-typing");
      indicator.textContent = (isAdmin(thread) ? typing.sender_name || "The client" : "Support") + " is typing…";
      indicator.hidden = false;
      clearTimeout(typingTimers.get(thread.dataset.conversationId));
      typingTimers.set(thread.dataset.conversationId, setTimeout(() => hideTyping(thread), TYPING_EXPIRES_MS));
    });
    socket.on("chat:read", (receipt) => {
      const thread = threadFor(receipt.conversation_id);
      if (!thread || isOurs(thread, receipt.reader_role)) return;
      thread.dataset.seenId = Math.max(Number(thread.dataset.seenId || 0), receipt.message_id);
      updateSeen(thread);
    });
    socket.on("chat:conversation", (row) => {
      const thread = threadFor(row.id);
      if (thread) setState(thread, row);
      refreshInbox();
    });
    socket.on("chat:error", (error) => {
      threads().forEach((thread) => {
        const item = error.client_message_id && thread.querySelector(
          `.chat-message.pending[data-client-message-id="${CSS.escape(error.client_message_id)}"]`);
        if (item) {
          item.classList.add("failed");
          showError(thread, "Not sent: " + error.reason);
        }
      });
    });
    socket.on("presence", (presence) => {
      document.querySelectorAll(".chat-away").forEach((node) => { node.hidden = presence.admins_online; });
    });
  }

  document.addEventListener("ems:socket", (event) => bind(event.detail));
  if (window.ems && window.ems.socket) bind(window.ems.socket);
  document.addEventListener("htmx:load", (event) => initAll(event.detail.elt));
  document.addEventListener("DOMContentLoaded", () => initAll(document));
  // "Load earlier" swaps older messages in: the "Seen" mark may belong to one of them.
  document.addEventListener("htmx:afterSettle", (event) => {
    const thread = event.detail.elt.closest && event.detail.elt.closest(".chat-thread");
    if (thread) updateSeen(thread);
  });
  // The rules page answers an invalid form with 422 and the form with its errors: show it.
  document.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.xhr.status === 422 && event.detail.elt.closest(".rules-page")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  // Quick switching in the inbox: Alt+↓ / Alt+↑ open the next / previous conversation.
  document.addEventListener("keydown", (event) => {
    if (!event.altKey || !["ArrowDown", "ArrowUp"].includes(event.key)) return;
    const rows = Array.from(document.querySelectorAll(".inbox-row a"));
    if (!rows.length) return;
    event.preventDefault();
    const current = rows.findIndex((link) => link.parentElement.classList.contains("selected"));
    const step = event.key === "ArrowDown" ? 1 : -1;
    rows[(current + step + rows.length) % rows.length].click();
  });
  document.addEventListener("visibilitychange", () => threads().forEach(markRead));
  setInterval(refreshWaitingTimes, 30000);
})();
