// Shows every <time datetime="..."> in the browser's own time zone (pages say so). The
// server writes UTC (correct without script); the UTC text stays in the title, on hover.
(function () {
  "use strict";

  const format = new Intl.DateTimeFormat(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });

  document.querySelectorAll("time[datetime]").forEach(function (element) {
    const moment = new Date(element.getAttribute("datetime"));
    if (Number.isNaN(moment.getTime())) {
      return;
    }
    if (!element.title) {
      element.title = element.textContent.trim();
    }
    element.textContent = format.format(moment);
    element.classList.add("local-time");
  });
})();
