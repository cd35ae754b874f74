// The course website's own script (segan_lib/book/conf.py loads this file). Figures: each image of
// a lesson's outputs or a result page opens at full size when clicked, and is never drawn smaller
// than MIN_SCALE of its own size, so the text in it stays readable; a wider one scrolls sideways.
// Inline formulas: one wider than its paragraph (on a phone) scrolls sideways instead of being cut.
(function () {
  "use strict";
  const MIN_SCALE = 0.6;

  function fit(img) {
    if (img.naturalWidth > 0) {
      img.style.minWidth = Math.round(img.naturalWidth * MIN_SCALE) + "px";
    }
  }

  function prepare(img) {
    if (!img.closest("a")) {
      const link = document.createElement("a");
      link.href = img.getAttribute("src");
      link.className = "segan-full-size";
      link.title = "Open the image at full size";
      img.parentNode.insertBefore(link, img);
      link.appendChild(img);
    } else {
      img.closest("a").classList.add("segan-full-size");
    }
    if (img.complete) {
      fit(img);
    } else {
      img.addEventListener("load", () => fit(img));
    }
  }

  function fitFormulas() {
    document.querySelectorAll("article mjx-container:not([display='true'])").forEach((math) => {
      math.classList.remove("segan-wide-formula");  // measured at its own width
      const column = math.parentElement.getBoundingClientRect().width;
      if (math.getBoundingClientRect().width > column + 1) {
        math.classList.add("segan-wide-formula");  // wider than its paragraph: no line break can help
      }
    });
  }

  function start() {
    document.querySelectorAll("div.cell_output img, main figure img").forEach(prepare);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(fitFormulas);
      window.addEventListener("resize", fitFormulas);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
