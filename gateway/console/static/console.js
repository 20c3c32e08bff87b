// The console's own script: the few behaviours htmx attributes do not express.
// Loaded before Alpine (both deferred), so the components below exist when Alpine starts.
"use strict";

// An element marked data-preview-text (an SMS template's text) asks for its preview with
// its own value only, not the whole form around it.
document.addEventListener("htmx:configRequest", function (event) {
  var elt = event.detail.elt;
  if (elt.hasAttribute("data-preview-text")) {
    event.detail.parameters = { text: elt.value };
  }
});

document.addEventListener("alpine:init", function () {
  // Email: a preset button fills host, port, security (and the username where the provider
  // fixes it) and shows the preset's one-line hint.
  window.Alpine.data("smtpPresets", function () {
    return {
      hint: "",
      apply: function (button) {
        var preset = JSON.parse(button.dataset.preset);
        var form = button.closest("form");
        form.elements.host.value = preset.host;
        form.elements.port.value = String(preset.port);
        form.elements.security.value = preset.security;
        if (preset.username) {
          form.elements.username.value = preset.username;
        }
        this.hint = preset.hint;
        form.elements.host.focus();
      },
    };
  });

  // WhatsApp: show the fields of the chosen provider only.
  window.Alpine.data("providerSwitch", function () {
    return {
      provider: "",
      init: function () {
        this.provider = this.$refs.provider.value;
      },
      choose: function (event) {
        this.provider = event.target.value;
      },
      shows: function (names) {
        return names.split(" ").indexOf(this.provider) >= 0;
      },
    };
  });

  // Template rows (SMS and WhatsApp): add a blank row from the page's <template>, remove one.
  window.Alpine.data("rows", function () {
    return {
      added: 0,
      add: function () {
        var blank = this.$refs.blank.content.firstElementChild.cloneNode(true);
        // every row's inputs keep ids of their own, so each label still names its input
        var suffix = "-new" + String((this.added += 1));
        blank.querySelectorAll("[id]").forEach(function (el) {
          el.id += suffix;
        });
        blank.querySelectorAll("label[for]").forEach(function (label) {
          label.htmlFor += suffix;
        });
        blank.querySelectorAll("[aria-describedby]").forEach(function (el) {
          el.setAttribute("aria-describedby", el.getAttribute("aria-describedby") + suffix);
        });
        this.$refs.body.appendChild(blank);
        window.htmx.process(blank);
        var first = blank.querySelector("input, textarea");
        if (first) {
          first.focus();
        }
      },
      remove: function (button) {
        button.closest("[data-row]").remove();
      },
    };
  });
});
