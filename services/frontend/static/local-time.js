// Shows every <time datetime="..."> and chart date in the browser's own time zone (pages say
// so). The server writes UTC (correct without script); a <time>'s UTC text stays in its title.
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

  // A chart's date labels (SVG has no <time>): the day in the browser's time zone.
  const day = new Intl.DateTimeFormat(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
  });
  document.querySelectorAll("svg text[data-datetime]").forEach(function (element) {
    const moment = new Date(element.getAttribute("data-datetime"));
    if (!Number.isNaN(moment.getTime())) {
      element.textContent = day.format(moment);
    }
  });
})();
