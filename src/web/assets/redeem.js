// The redeem form's small help: digits grouped in fours as they are typed or pasted, the
// format checked before sending, and one submit only. The form works without it; the server
// checks everything again.
"use strict";
(function () {
  var form = document.getElementById("redeem-form");
  if (!form) return;
  var field = document.getElementById("code");
  var error = document.getElementById("code-error");
  var button = document.getElementById("redeem-button");
  var sent = false;

  function digits(text) {
    return text.replace(/\D/g, "");
  }

  function grouped(d) {
    return d.slice(0, 16).replace(/(\d{4})(?=\d)/g, "$1 ");
  }

  function showError(text) {
    error.textContent = text;
    error.hidden = false;
    field.setAttribute("aria-invalid", "true");
    field.setAttribute("aria-describedby", "code-hint code-error");
  }

  field.addEventListener("input", function () {
    // Keep the caret after the same number of digits as before the regrouping.
    var caret = field.selectionStart === null ? field.value.length : field.selectionStart;
    var before = digits(field.value.slice(0, caret)).length;
    var next = grouped(digits(field.value));
    if (next !== field.value) {
      field.value = next;
      var at = 0, seen = 0;
      while (at < next.length && seen < before) {
        if (/\d/.test(next[at])) seen++;
        at++;
      }
      field.setSelectionRange(at, at);
    }
    if (field.getAttribute("aria-invalid") === "true" && digits(next).length === 16) {
      field.removeAttribute("aria-invalid");
    }
  });

  form.addEventListener("submit", function (event) {
    if (sent) {
      event.preventDefault();
      return;
    }
    var count = digits(field.value).length;
    if (count !== 16) {
      event.preventDefault();
      showError(count === 0
        ? "Enter the 16-digit code from the back of your card."
        : "A gift card code has 16 digits; this has " + count + ". Check the code under the scratch-off strip.");
      field.focus();
      return;
    }
    sent = true;
    button.disabled = true;
    button.textContent = "Redeeming…";
  });

  // After an answer, the focus goes where the customer goes next: the success message, read
  // first by a screen reader, or the field to type the code again.
  var outcome = document.getElementById("outcome");
  if (outcome) outcome.focus();
  else if (field.getAttribute("aria-invalid") === "true") field.focus();
})();
