// Progressive enhancement only: every page works without this file.
// A button with data-copy="<id>" copies the text of the element <id> (the new API key,
// shown once) and then says data-done. Hidden until this script shows it, so a browser
// without script never offers a button that does nothing; the key stays selectable.
"use strict";
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source || !navigator.clipboard) {
    return;
  }
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = button.getAttribute("data-done") || button.textContent;
    });
  });
});
// A form marked data-autosubmit (an answer an application asked to receive by POST,
// response_mode=form_post) is sent at once; without script its button sends it.
document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
  form.submit();
});
// A link marked data-autofollow (the way back to an application after signing in) is
// followed at once; without script the person follows it.
document.querySelectorAll("a[data-autofollow]").forEach(function (link) {
  window.location.replace(link.href);
});
