// Typesets the math of a page with the KaTeX shipped in docs/assets/katex (no CDN at view time).
// pymdownx.arithmatex (generic mode) leaves $...$ as <span class="arithmatex">\(...\)</span> and $$...$$ as
// <div class="arithmatex">\[...\]</div>; only those elements are rendered, so a dollar sign elsewhere stays text.
document$.subscribe(({ body }) => {
  body.querySelectorAll(".arithmatex").forEach((element) => {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false,
    });
  });
});
