// The course website's figures (segan_lib/book/conf.py loads this file): each image of a lesson's
// outputs or a result page opens at full size when clicked, and is never drawn smaller than
// MIN_SCALE of its own size, so the text in it stays readable; a wider one scrolls sideways.
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

  function start() {
    document.querySelectorAll("div.cell_output img, main figure img").forEach(prepare);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
