// Small conveniences: Ctrl/Cmd+Enter runs the SQL box; selectors submit their form.
document.addEventListener("DOMContentLoaded", () => {
  const box = document.querySelector("textarea[name=q]");
  if (box) {
    box.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        box.form.submit();
      }
    });
  }
  document.querySelectorAll("select[data-autosubmit]").forEach((s) => {
    s.addEventListener("change", () => s.form.submit());
  });
});
