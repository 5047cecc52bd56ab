// The administrators' support tools in the browser: the canned replies picker ("/" in an
// inbox reply box), live private notes, and the client's rating prompt after "Resolve".
// Text from the server is only ever set with textContent.
(function () {
  "use strict";

  const REPLY_BOX = ".admin-thread .chat-form textarea";
  // "/" at the start or after a space, then the filter typed so far, up to the caret.
  const SLASH_COMMAND = /(^|\s)\/([^\s/]*)$/;
  const repliesByConversation = new Map();
  let picker = null; // { field, list, items, active, start }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function conversationIdOf(field) {
    return field.closest(".chat-thread").dataset.conversationId;
  }

  // The replies come filled for the conversation's client; fetched once per conversation.
  function repliesFor(conversationId) {
    if (!repliesByConversation.has(conversationId)) {
      repliesByConversation.set(conversationId,
        fetch("/support/conversations/" + conversationId + "/canned", { credentials: "same-origin" })
          .then((response) => (response.ok ? response.json() : { replies: [] }))
          .then((data) => data.replies)
          .catch(() => { repliesByConversation.delete(conversationId); return []; }));
    }
    return repliesByConversation.get(conversationId);
  }

  function closePicker() {
    if (picker) picker.list.remove();
    picker = null;
  }

  function highlight(index) {
    if (!picker || !picker.items.length) return;
    picker.active = (index + picker.items.length) % picker.items.length;
    picker.list.querySelectorAll("li").forEach((item, position) => {
      item.classList.toggle("active", position === picker.active);
      item.setAttribute("aria-selected", String(position === picker.active));
    });
  }

  function insert(reply) {
    const { field, start } = picker;
    const caret = field.selectionStart;
    field.value = field.value.slice(0, start) + reply.text + field.value.slice(caret);
    const end = start + reply.text.length;
    field.setSelectionRange(end, end);
    closePicker();
    field.focus();
  }

  function showPicker(field, start, filter, replies) {
    const needle = filter.toLowerCase();
    // Titles that match first, then replies whose text does.
    const byTitle = replies.filter((reply) => reply.title.toLowerCase().includes(needle));
    const byText = replies.filter((reply) => !byTitle.includes(reply) && reply.text.toLowerCase().includes(needle));
    const items = byTitle.concat(byText);
    closePicker();
    const list = element("ul", "canned-picker");
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "Canned replies");
    if (!items.length) list.append(element("li", "canned-none", replies.length
      ? "No canned reply matches “" + filter + "”" : "No canned replies yet"));
    items.forEach((reply) => {
      const item = element("li", "canned-option");
      item.setAttribute("role", "option");
      item.append(element("strong", "", reply.title), element("span", "canned-preview", reply.text));
      // mousedown, not click: the field keeps its focus and caret.
      item.addEventListener("mousedown", (event) => { event.preventDefault(); insert(reply); });
      list.append(item);
    });
    field.closest(".chat-form").append(list);
    picker = { field, list, items, active: 0, start };
    highlight(0);
  }

  function onInput(field) {
    const before = field.value.slice(0, field.selectionStart);
    const match = SLASH_COMMAND.exec(before);
    if (!match) { closePicker(); return; }
    const start = before.length - match[2].length - 1; // where the "/" is
    repliesFor(conversationIdOf(field)).then((replies) => {
      // The field may have changed while the list was fetched.
      if (field.value.slice(0, field.selectionStart) === before) showPicker(field, start, match[2], replies);
    });
  }

  document.addEventListener("input", (event) => {
    if (event.target.matches && event.target.matches(REPLY_BOX)) onInput(event.target);
  });

  // Captured on the document, before the chat's own Enter-sends handler on the field.
  document.addEventListener("keydown", (event) => {
    if (!picker || event.target !== picker.field) return;
    const keys = {
      ArrowDown: () => highlight(picker.active + 1),
      ArrowUp: () => highlight(picker.active - 1),
      Enter: () => (picker.items.length ? insert(picker.items[picker.active]) : closePicker()),
      Tab: () => (picker.items.length ? insert(picker.items[picker.active]) : closePicker()),
      Escape: closePicker,
    };
    if (!keys[event.key] || event.isComposing) return;
    event.preventDefault();
    event.stopPropagation();
    keys[event.key]();
  }, true);

  document.addEventListener("focusout", (event) => {
    if (picker && event.target === picker.field) closePicker();
  });

  // A form of the tools answers an invalid submission with 422 (or 409 for a second
  // rating) and the form with its reason: show it.
  document.addEventListener("htmx:beforeSwap", (event) => {
    const status = event.detail.xhr.status;
    if ((status === 422 || status === 409) && event.detail.elt.closest(".support-tools-form, .canned-page")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  let socket = null;
  function bind(newSocket) {
    if (!newSocket || socket === newSocket) return;
    socket = newSocket;
    // A colleague added a private note: the open conversation shows it (admins only get this).
    socket.on("chat:note", (note) => {
      const panel = document.getElementById("chat-notes-" + note.conversation_id);
      if (panel) htmx.trigger(panel, "notes-changed");
    });
    // The client rated: an open conversation shows the rating at once.
    socket.on("chat:rating", (rating) => {
      const panel = document.getElementById("chat-ratings-" + rating.conversation_id);
      if (panel) htmx.trigger(panel, "ratings-changed");
    });
    // The client's conversation changed state: ask again whether a rating is due.
    socket.on("chat:conversation", () => {
      if (document.getElementById("chat-rating")) htmx.trigger(document.body, "rating-check");
    });
  }

  document.addEventListener("ems:socket", (event) => bind(event.detail));
  if (window.ems && window.ems.socket) bind(window.ems.socket);
})();
