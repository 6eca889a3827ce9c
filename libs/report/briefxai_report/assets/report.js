// The report's map: one SVG circle per reported conversation, drawn from the JSON data block.
// Text reaches the page only through textContent (never innerHTML).
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var WIDTH = 1000;
  var HEIGHT = 620;
  var PAD = 16;
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var svg = document.getElementById("map");
  var tip = document.getElementById("tooltip");
  var points = data.points;
  var clusters = data.clusters;
  var groups = data.groups;

  function bounds(index) {
    var lo = Infinity;
    var hi = -Infinity;
    for (var i = 0; i < points.length; i++) {
      var v = points[i][index];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    return points.length ? [lo, hi] : [0, 1];
  }

  // One scale for both axes, so distances on the map keep their proportions.
  var bx = bounds(0);
  var by = bounds(1);
  var scale = Math.min((WIDTH - 2 * PAD) / (bx[1] - bx[0] || 1), (HEIGHT - 2 * PAD) / (by[1] - by[0] || 1));
  var offX = (WIDTH - (bx[1] - bx[0]) * scale) / 2;
  var offY = (HEIGHT - (by[1] - by[0]) * scale) / 2;
  var radius = points.length > 20000 ? 1.2 : points.length > 4000 ? 2 : points.length > 800 ? 3 : 4.5;

  var layers = groups.map(function (group, index) {
    var layer = document.createElementNS(NS, "g");
    layer.setAttribute("class", "group");
    layer.setAttribute("data-group", String(index));
    layer.setAttribute("fill", group.color);
    svg.appendChild(layer);
    return layer;
  });

  points.forEach(function (point, index) {
    var circle = document.createElementNS(NS, "circle");
    circle.setAttribute("class", "point");
    circle.setAttribute("cx", ((point[0] - bx[0]) * scale + offX).toFixed(1));
    // SVG's y grows downwards; the map's upwards.
    circle.setAttribute("cy", (HEIGHT - ((point[1] - by[0]) * scale + offY)).toFixed(1));
    circle.setAttribute("r", String(radius));
    circle.setAttribute("data-index", String(index));
    layers[clusters[point[2]].group].appendChild(circle);
  });

  function pointOf(target) {
    if (!target || !target.classList || !target.classList.contains("point")) return null;
    return points[Number(target.getAttribute("data-index"))];
  }

  function show(event, point) {
    var cluster = clusters[point[2]];
    var group = groups[cluster.group];
    tip.querySelector(".t-group").textContent = group.name;
    tip.querySelector(".t-cluster").textContent = cluster.name === group.name ? "" : cluster.name;
    tip.querySelector(".t-request").textContent = point[3] || "(no request summary)";
    tip.hidden = false;
    var box = svg.parentNode.getBoundingClientRect();
    var x = event.clientX - box.left + 14;
    var y = event.clientY - box.top + 14;
    if (x + tip.offsetWidth > box.width) x = Math.max(0, x - tip.offsetWidth - 28);
    if (y + tip.offsetHeight > box.height) y = Math.max(0, y - tip.offsetHeight - 28);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }

  svg.addEventListener("mousemove", function (event) {
    var point = pointOf(event.target);
    if (point) show(event, point);
    else tip.hidden = true;
  });
  svg.addEventListener("mouseleave", function () {
    tip.hidden = true;
  });

  // A click on a point opens its base cluster in the tree.
  svg.addEventListener("click", function (event) {
    var point = pointOf(event.target);
    if (!point) return;
    var node = document.getElementById("cluster-" + clusters[point[2]].id);
    if (!node) return;
    for (var open = node; open; open = open.parentElement) {
      if (open.tagName === "DETAILS") open.open = true;
    }
    node.scrollIntoView({ block: "start" });
    node.classList.add("flash");
    setTimeout(function () {
      node.classList.remove("flash");
    }, 1600);
  });

  // Legend buttons show or hide a top-level cluster's points.
  Array.prototype.forEach.call(document.querySelectorAll("#legend button"), function (button) {
    button.addEventListener("click", function () {
      var layer = layers[Number(button.getAttribute("data-group"))];
      var shown = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", String(shown));
      layer.classList.toggle("hidden", !shown);
    });
  });

  svg.setAttribute("data-points", String(points.length));
  document.documentElement.classList.add("map-ready");
})();
