// Live sentence/character counters (Figure 7) and the "one or two RoTs" limit; the server re-checks both.
"use strict";
function countSentences(text) {
  // Same rule as pipeline.count_sentences: pieces between ., ! and ? that are not blank.
  return text.split(/[.!?]+/).filter(function (p) { return p.trim().length > 0; }).length;
}
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-counter]").forEach(function (field) {
    var out = document.getElementById(field.dataset.counter);
    var min = parseInt(field.dataset.min || "0", 10);
    function update() {
      var text = field.value.trim().replace(/\s+/g, " ");
      var n = countSentences(text);
      out.textContent = n + (n === 1 ? " sentence" : " sentences") + " (" + text.length + " characters) detected";
      out.classList.toggle("short", min > 0 && text.length < min);
    }
    field.addEventListener("input", update);
    update();
  });
  var boxes = document.querySelectorAll("input[data-max-group='rot']");
  boxes.forEach(function (box) {
    box.addEventListener("change", function () {
      var picked = Array.prototype.filter.call(boxes, function (b) { return b.checked; });
      if (picked.length > 2) { box.checked = false; }
    });
  });
});
