// Buttons marked data-action="print" print the page (no inline handler: the
// Content-Security-Policy allows scripts from files only).
document.addEventListener("click", function (event) {
  if (event.target.closest("[data-action='print']")) {
    window.print();
  }
});
