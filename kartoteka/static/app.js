// Kartoteka's own behaviour on top of htmx: every page works without it, through plain forms and links.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  // Repeatable values (several phones, e-mails, references): add and remove inputs.
  document.addEventListener("click", (event) => {
    const add = event.target.closest("[data-add]");
    if (add) {
      const box = add.closest("[data-repeat]");
      const item = box.querySelector("template").content.firstElementChild.cloneNode(true);
      box.insertBefore(item, add);
      if (window.htmx) htmx.process(item);
      item.querySelector("input").focus();
      return;
    }
    const remove = event.target.closest("[data-remove]");
    if (remove) {
      const box = remove.closest("[data-repeat]");
      const item = remove.closest(".repeat-item");
      const next = item.nextElementSibling && item.nextElementSibling.querySelector("input, button");
      item.remove();
      (next || box.querySelector("[data-add]")).focus();
      box.closest("form").dispatchEvent(new Event("change", { bubbles: true }));
      return;
    }
    const tag = event.target.closest("[data-tag-add]");
    if (tag) {
      const input = document.getElementById(tag.dataset.tagAdd);
      const tags = input.value.split(",").map((s) => s.trim()).filter(Boolean);
      if (!tags.includes(tag.dataset.tag)) tags.push(tag.dataset.tag);
      input.value = tags.join(", ");
      input.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });

  // Text with a length limit: the browser's maxlength drops whatever goes past it without a word. The count
  // under the field follows the text; its status says when the limit is reached or typed or pasted text was cut.
  function countCharacters(input, wanted, pasted) {
    const counter = document.getElementById(input.dataset.counter);
    const message = counter && document.getElementById(counter.dataset.message);
    if (!message) return;
    const max = input.maxLength;
    const used = input.value.length;
    counter.querySelector("[data-used]").textContent = used;
    counter.classList.toggle("at-limit", used >= max);
    let text = "";
    if (pasted && wanted > max) text = counter.dataset.cut;
    else if (used >= max) text = counter.dataset.full;
    text = text.replace("{max}", max).replace("{length}", wanted);
    if (message.textContent !== text) message.textContent = text;
  }
  document.addEventListener("beforeinput", (event) => {
    const input = event.target;
    if (!input.dataset || !input.dataset.counter || !event.inputType.startsWith("insert")) return;
    let added = event.data;
    if (added == null) added = event.dataTransfer ? event.dataTransfer.getData("text/plain") : "\n";
    const start = input.selectionStart ?? input.value.length;
    const end = input.selectionEnd ?? start;
    input.wanted = input.value.length - (end - start) + added.length;
    input.pasted = added.length > 1;
    // Nothing (or only part) of it gets in: say so now, as no input event may follow.
    if (input.wanted > input.maxLength) countCharacters(input, input.wanted, input.pasted);
  });
  document.addEventListener("input", (event) => {
    const input = event.target;
    if (!input.dataset || !input.dataset.counter) return;
    countCharacters(input, input.wanted || input.value.length, input.pasted);
    input.wanted = 0;
    input.pasted = false;
  });

  // Dates (and times) typed as text in the reader's order: data-date-format holds the type's pattern from the server
  // (dd.MM.yyyy or yyyy-MM-dd, then HH:mm for a moment; seconds follow when it has some). The calendar button opens
  // the browser's own picker, a nameless hidden date input, set to the text's date first; a date picked there is
  // written into the text in the reader's order, with the input and change events htmx's live check and the
  // touched fields listen for. Year first is read in every language, day first as the server reads it.
  const pad = (number, width) => String(number).padStart(width, "0");
  const TIME = "(?:,?\\s+|T)(\\d{1,2}):(\\d{2})(?::(\\d{2}))?";
  function readMoment(text, format) {
    const time = format.includes("HH") ? `(?:${TIME})?` : "";
    const value = text.trim();
    let match = value.match(new RegExp(`^(\\d{4})[-./](\\d{1,2})[-./](\\d{1,2})${time}$`));
    if (match) return { year: match[1], month: match[2], day: match[3], hour: match[4], minute: match[5], second: match[6] };
    const separators = format.startsWith("dd") ? "[-./]" : "\\.";
    match = value.match(new RegExp(`^(\\d{1,2})${separators}(\\d{1,2})${separators}(\\d{4})${time}$`));
    if (match) return { year: match[3], month: match[2], day: match[1], hour: match[4], minute: match[5], second: match[6] };
    return null;
  }
  function writeMoment(parts, format) {
    const values = { yyyy: pad(parts.year, 4), MM: pad(parts.month, 2), dd: pad(parts.day, 2),
                     HH: pad(parts.hour || 0, 2), mm: pad(parts.minute || 0, 2) };
    const text = format.replace(/yyyy|MM|dd|HH|mm/g, (token) => values[token]);
    return format.includes("HH") && parts.second && Number(parts.second) ? `${text}:${pad(parts.second, 2)}` : text;
  }
  function openCalendar(box) {
    const text = box.querySelector("[data-date-format]");
    const picker = box.querySelector(".calendar-picker");
    if (!text || !picker || text.readOnly || text.disabled) return;
    const parts = readMoment(text.value, text.dataset.dateFormat);
    let value = "";
    if (parts) {
      value = `${pad(parts.year, 4)}-${pad(parts.month, 2)}-${pad(parts.day, 2)}`;
      if (picker.type === "datetime-local") {
        value += `T${pad(parts.hour || 0, 2)}:${pad(parts.minute || 0, 2)}`;
        if (parts.second && Number(parts.second)) value += `:${pad(parts.second, 2)}`;
      }
    }
    if (picker.type === "datetime-local") picker.step = value.length > 16 ? "1" : "60";  // seconds only if it has some
    picker.value = value;  // a day the picker cannot show (31.02) leaves it empty: it opens on today
    try {
      picker.showPicker();
    } catch (error) {
      text.focus();  // no picker here (or it refused): the text is there to type in
    }
  }
  // The picker's own events stop at the document: it has no name, the text's change is what the form hears of.
  function calendarPicked(event) {
    const picker = event.target;
    if (!picker.matches || !picker.matches(".calendar-picker")) return;
    event.stopPropagation();
    const text = picker.closest(".date-entry").querySelector("[data-date-format]");
    const parts = readMoment(picker.value, "yyyy-MM-dd HH:mm");
    if (!text || !parts) return;  // the picker cleared or half-filled: the text stays as typed
    const next = writeMoment(parts, text.dataset.dateFormat);
    if (next === text.value) return;
    text.value = next;
    text.dispatchEvent(new Event("input", { bubbles: true }));
    text.dispatchEvent(new Event("change", { bubbles: true }));
  }
  document.addEventListener("input", calendarPicked, true);
  document.addEventListener("change", calendarPicked, true);
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-calendar]");
    if (button) openCalendar(button.closest(".date-entry"));
  });
  // Alt+Down in the text opens the calendar too, as it does in the browser's own date inputs.
  document.addEventListener("keydown", (event) => {
    if (event.altKey && event.key === "ArrowDown" && event.target.matches && event.target.matches("[data-date-format]")) {
      event.preventDefault();
      openCalendar(event.target.closest(".date-entry"));
    }
  });

  // Confirm before destructive forms (delete).
  document.addEventListener("submit", (event) => {
    const message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // Tabs: links and stacked panels without JavaScript, ARIA tabs with it.
  function setupTabs(list) {
    const tabs = Array.from(list.querySelectorAll('[role="tab"]'));
    const panels = tabs.map((tab) => document.getElementById(tab.getAttribute("aria-controls")));
    const select = (index, focus) => {
      tabs.forEach((tab, i) => {
        const active = i === index;
        tab.setAttribute("aria-selected", active ? "true" : "false");
        tab.tabIndex = active ? 0 : -1;
        if (panels[i]) panels[i].classList.toggle("inactive", !active);
      });
      if (focus) tabs[index].focus();
    };
    list.classList.add("enhanced");
    panels.forEach((panel) => panel && panel.classList.add("enhanced"));
    tabs.forEach((tab, i) => {
      tab.addEventListener("click", (event) => { event.preventDefault(); select(i, false); });
      tab.addEventListener("keydown", (event) => {
        const visible = tabs.filter((t) => !t.hidden);
        const at = visible.indexOf(tab);
        let to = null;
        if (event.key === "ArrowRight") to = visible[(at + 1) % visible.length];
        if (event.key === "ArrowLeft") to = visible[(at - 1 + visible.length) % visible.length];
        if (event.key === "Home") to = visible[0];
        if (event.key === "End") to = visible[visible.length - 1];
        if (to) { event.preventDefault(); select(tabs.indexOf(to), true); }
      });
    });
    // A link to a field (the error summary) opens the tab holding it.
    document.addEventListener("click", (event) => {
      const link = event.target.closest('a[href^="#f-"], a[href^="#calc-"]');
      const target = link && document.getElementById(link.getAttribute("href").slice(1));
      const index = target ? panels.findIndex((p) => p && p.contains(target)) : -1;
      if (index >= 0) { event.preventDefault(); select(index, false); target.focus(); }
    });
    // Open the tab holding the first error, else the first tab.
    const firstError = panels.findIndex((p) => p && p.querySelector('[aria-invalid="true"]'));
    select(firstError >= 0 ? firstError : 0, false);
  }

  // A reference picker: the text is for people; the hidden input after it holds the id of the record picked.
  // Choosing a suggestion sets the id; text changed by hand empties it (the server then reads the text), and
  // text put back as it was brings the first id back.
  document.addEventListener("input", (event) => {
    const text = event.target;
    if (!text.matches || !text.matches("[data-picker-text]")) return;
    const picked = text.nextElementSibling;
    if (!picked || !picked.matches("[data-picker-id]")) return;
    const option = text.list && Array.from(text.list.options).find((o) => o.value === text.value);
    if (option && option.dataset.id) picked.value = option.dataset.id;
    else picked.value = text.value === text.defaultValue ? picked.defaultValue : "";
  }, true);

  // Fields the user has left: live checks show their errors only, not those of untouched fields.
  function touch(event) {
    const form = event.target.closest("#card-form");
    const name = (event.target.name || "").replace(/__text$/, "");  // a picker's text stands for its field
    if (!form || !name || name.startsWith("_")) return;
    const box = form.querySelector("#touched");
    const names = new Set(box.value.split(",").filter(Boolean));
    names.add(name);
    box.value = Array.from(names).join(",");
  }
  // Capture phase: the field counts as touched before htmx (listening on the form) sends the change.
  document.addEventListener("change", touch, true);
  document.addEventListener("focusout", touch, true);

  // After a live check: show/hide conditional fields and sections, required and read-only marks.
  // Inputs are never replaced, so focus and typed text stay where they are.
  function applyState() {
    const holder = document.getElementById("form-state");
    const form = document.getElementById("card-form");
    if (!holder || !form) return;
    const state = JSON.parse(holder.dataset.state || "{}");
    const hidden = new Set(state.hidden || []);
    const required = new Set(state.required || []);
    const readonly = new Set(state.readonly || []);
    form.querySelectorAll("[data-field]").forEach((row) => {
      const name = row.dataset.field;
      row.hidden = hidden.has(name);
      row.classList.toggle("is-required", required.has(name));
      row.querySelectorAll(`[name="${name}"]`).forEach((input) => {
        if (input.type === "hidden") return;
        if (required.has(name)) input.setAttribute("aria-required", "true"); else input.removeAttribute("aria-required");
        const lock = readonly.has(name);
        if (input.tagName === "SELECT" || input.type === "checkbox" || input.type === "radio") input.disabled = lock;
        else input.readOnly = lock;
      });
      row.querySelectorAll("[data-calendar]").forEach((button) => { button.disabled = readonly.has(name); });
      const error = row.querySelector(".field-error");
      const input = row.querySelector(`[name="${name}"]:not([type="hidden"])`);
      if (input) {
        if (error && error.textContent.trim()) input.setAttribute("aria-invalid", "true");
        else input.removeAttribute("aria-invalid");
      }
    });
    const hiddenSections = new Set(state.hiddenSections || []);
    form.querySelectorAll("[data-section]").forEach((section) => {
      section.hidden = hiddenSections.has(section.dataset.section);
    });
  }
  document.addEventListener("htmx:afterSettle", applyState);
  document.addEventListener("htmx:oobAfterSwap", applyState);

  // Colour of the chosen option next to a select.
  function paint(select) {
    const option = select.selectedOptions[0];
    select.style.setProperty("--opt", option && option.dataset.color ? option.dataset.color : "transparent");
  }
  document.addEventListener("change", (event) => {
    if (event.target.matches("select[data-colored]")) paint(event.target);
  });

  // Kanban: drag a card to another column; the server answers with where to go next.
  function setupKanban(board) {
    let dragged = null;
    board.addEventListener("dragstart", (event) => {
      dragged = event.target.closest(".kanban-card");
      if (!dragged) return;
      event.dataTransfer.setData("text/plain", dragged.dataset.id);
      event.dataTransfer.effectAllowed = "move";
      dragged.classList.add("dragging");
    });
    board.addEventListener("dragend", () => { if (dragged) dragged.classList.remove("dragging"); });
    board.addEventListener("dragover", (event) => {
      const column = event.target.closest(".kanban-col");
      if (column && dragged) { event.preventDefault(); column.classList.add("drop-target"); }
    });
    board.addEventListener("dragleave", (event) => {
      const column = event.target.closest(".kanban-col");
      if (column && !column.contains(event.relatedTarget)) column.classList.remove("drop-target");
    });
    board.addEventListener("drop", async (event) => {
      const column = event.target.closest(".kanban-col");
      if (!column || !dragged) return;
      event.preventDefault();
      column.classList.remove("drop-target");
      if (column.contains(dragged)) return;
      const url = board.dataset.moveUrl.replace(/\/0\/move$/, `/${dragged.dataset.id}/move`);
      const body = new URLSearchParams({ to: column.dataset.stage, version: dragged.dataset.version,
                                         board: board.dataset.board, csrf_token: csrf() });
      column.querySelector(".kanban-cards").appendChild(dragged);
      const response = await fetch(url, { method: "POST", body, headers: { "HX-Request": "true", "X-CSRF-Token": csrf() } });
      const target = response.headers.get("HX-Redirect");
      // assign() of the same address with a #card-… part only scrolls: reload to show the board as saved.
      if (target) window.location.assign(target); else window.location.reload();
    });
  }

  // Kanban by keyboard: each card is one tab stop (a roving tabindex on its title link). The arrow keys go
  // between cards (up, down, Home, End) and columns (left, right; empty columns are skipped), M or the card's
  // button opens its move form (Escape closes it), Shift + left or right moves the card one column over.
  function setupBoardKeys(board) {
    const links = () => Array.from(board.querySelectorAll(".kanban-card > .card-link"));
    const columns = () => Array.from(board.querySelectorAll(".kanban-col"))
      .map((column) => ({ column, links: Array.from(column.querySelectorAll(".kanban-card > .card-link")) }));
    const current = (link) => links().forEach((l) => { l.tabIndex = l === link ? 0 : -1; });
    const go = (link) => { current(link); link.focus(); };
    const openMove = (card) => {
      const form = card.querySelector(".move-form");
      if (!form) return;
      form.classList.add("open");
      card.querySelector(".move-toggle").setAttribute("aria-expanded", "true");
      form.querySelector("select").focus();
    };
    const closeMove = (card) => {
      const form = card.querySelector(".move-form");
      if (!form || !form.classList.contains("open")) return;
      form.classList.remove("open");
      card.querySelector(".move-toggle").setAttribute("aria-expanded", "false");
      go(card.querySelector(".card-link"));
    };
    const moveOver = (card, step) => {
      const form = card.querySelector(".move-form");
      const all = columns();
      const next = all[all.findIndex((c) => c.column.contains(card)) + step];
      if (!form || !next) return;
      form.elements.to.value = next.column.dataset.stage;
      form.requestSubmit();  // the board comes back with focus on the card (focusMovedCard)
    };

    links().forEach((link) => link.setAttribute("aria-describedby", "kanban-keys"));
    const hashed = /^#card-\d+$/.test(window.location.hash) && board.querySelector(`${window.location.hash} > .card-link`);
    current(hashed || links()[0]);
    board.addEventListener("focusin", (event) => {
      if (event.target.matches(".card-link")) current(event.target);
      else if (event.target.matches(".kanban-card")) event.target.querySelector(".card-link").focus();
    });
    board.addEventListener("click", (event) => {
      const toggle = event.target.closest(".move-toggle");
      if (!toggle) return;
      const card = toggle.closest(".kanban-card");
      if (card.querySelector(".move-form.open")) closeMove(card); else openMove(card);
    });
    board.addEventListener("keydown", (event) => {
      const card = event.target.closest(".kanban-card");
      if (!card || event.altKey || event.ctrlKey || event.metaKey) return;
      if (event.key === "Escape" && card.querySelector(".move-form.open")) {
        event.preventDefault();
        closeMove(card);
        return;
      }
      const link = event.target.closest(".card-link");
      if (!link) return;
      const horizontal = event.key === "ArrowLeft" || event.key === "ArrowRight";
      const step = event.key === "ArrowRight" ? 1 : -1;
      if (event.shiftKey) {
        if (horizontal) { event.preventDefault(); moveOver(card, step); }
        return;
      }
      if (event.code === "KeyM" || event.key === "m" || event.key === "M") {
        event.preventDefault();
        openMove(card);
        return;
      }
      const all = columns();
      const at = all.findIndex((c) => c.column.contains(link));
      const mine = all[at].links;
      const index = mine.indexOf(link);
      let to = null;
      if (event.key === "ArrowDown") to = mine[index + 1];
      else if (event.key === "ArrowUp") to = mine[index - 1];
      else if (event.key === "Home") to = mine[0];
      else if (event.key === "End") to = mine[mine.length - 1];
      else if (horizontal) {
        for (let c = at + step; c >= 0 && c < all.length && !to; c += step) {
          if (all[c].links.length) to = all[c].links[Math.min(index, all[c].links.length - 1)];
        }
      } else return;
      event.preventDefault();  // no scrolling on arrow keys, even at the board's edges
      if (to) {
        go(to);
        to.scrollIntoView({ block: "nearest", inline: "nearest" });
      }
    });
  }

  // After a failed save: move focus to the summary of errors so it is read out and can be followed.
  function focusErrors() {
    const summary = document.getElementById("error-summary");
    if (summary) summary.focus();
  }

  // After a keyboard move on the board, come back to the moved card (its title link, the card's tab stop).
  // The card itself is made focusable: Chromium, scrolling to the #card-N fragment once the page has loaded,
  // clears the focus unless the fragment's element takes it; setupBoardKeys hands that on to the link.
  function focusMovedCard() {
    const match = window.location.hash.match(/^#card-(\d+)$/);
    const card = match && document.getElementById(`card-${match[1]}`);
    if (!card) return;
    card.tabIndex = -1;
    (card.querySelector(".card-link") || card).focus();
  }

  // The header: below 1280px its Menu button shows and hides the folded links (app.css, "The header"); a dropdown
  // (the administration's links) closes on a click elsewhere or Escape, giving the focus back to its summary.
  document.addEventListener("click", (event) => {
    const toggle = event.target.closest(".menu-toggle");
    if (toggle) {
      const bar = document.getElementById(toggle.getAttribute("aria-controls"));
      const open = bar.classList.toggle("menu-open");
      toggle.setAttribute("aria-expanded", String(open));
      return;
    }
    document.querySelectorAll("details.dropdown[open]").forEach((menu) => {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const menu = event.target.closest && event.target.closest("details.dropdown[open]");
    if (menu) {
      menu.removeAttribute("open");
      menu.querySelector("summary").focus();
      return;
    }
    const bar = event.target.closest && event.target.closest(".topbar.menu-open");
    if (bar) {
      bar.classList.remove("menu-open");
      const toggle = bar.querySelector(".menu-toggle");
      toggle.setAttribute("aria-expanded", "false");
      toggle.focus();
    }
  });

  function init(root) {
    focusErrors();
    focusMovedCard();
    root.querySelectorAll("[data-tabs]").forEach(setupTabs);
    root.querySelectorAll("select[data-colored]").forEach(paint);
    root.querySelectorAll("[data-counter][maxlength]").forEach((input) => countCharacters(input, 0, false));
    // A browser without showPicker() has no calendar to open: the date is typed.
    if (!("showPicker" in HTMLInputElement.prototype)) root.querySelectorAll("[data-calendar]").forEach((b) => { b.hidden = true; });
    root.querySelectorAll("[data-kanban]").forEach((board) => { setupKanban(board); setupBoardKeys(board); });
    applyState();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => init(document));
  else init(document);
})();
