/**
 * Line charts over the last hour, drawn as inline SVG (no chart library): a time axis, a value
 * axis from 0, one polyline per series, broken where a value is missing. Each chart is a
 * `figure` whose caption and `aria-label` say in words what the lines show.
 */
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 560;
const HEIGHT = 160;
const PAD = { left: 40, right: 12, top: 10, bottom: 24 };
function el(name, attrs) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs))
        node.setAttribute(key, String(value));
    return node;
}
function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
/** Runs of consecutive points with a value: each becomes one polyline. */
function runs(points) {
    const out = [];
    let current = [];
    for (const [at, value] of points) {
        if (value === null) {
            if (current.length)
                out.push(current);
            current = [];
        }
        else {
            current.push([at, value]);
        }
    }
    if (current.length)
        out.push(current);
    return out;
}
export function lineChart(spec) {
    const values = spec.series.flatMap((s) => s.points.map(([, v]) => v)).filter((v) => v !== null);
    const top = spec.max ?? Math.max(1, ...values);
    const span = Math.max(1, spec.to - spec.from);
    const x = (at) => PAD.left + ((at - spec.from) / span) * (WIDTH - PAD.left - PAD.right);
    const y = (value) => HEIGHT - PAD.bottom - (value / top) * (HEIGHT - PAD.top - PAD.bottom);
    const figure = document.createElement("figure");
    figure.className = "chart";
    const caption = document.createElement("figcaption");
    caption.textContent = spec.title;
    figure.append(caption);
    const svg = el("svg", {
        viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
        role: "img",
        "aria-label": describe(spec),
    });
    for (const fraction of [0, 0.5, 1]) {
        const value = top * fraction;
        svg.append(el("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value), class: "grid" }));
        const label = el("text", { x: PAD.left - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" });
        label.textContent = spec.format(value);
        svg.append(label);
    }
    const ticks = [
        [spec.from, "start"],
        [(spec.from + spec.to) / 2, "middle"],
        [spec.to, "end"],
    ];
    for (const [at, anchor] of ticks) {
        const label = el("text", { x: x(at), y: HEIGHT - 6, class: "axis", "text-anchor": anchor });
        label.textContent = clock(at);
        svg.append(label);
    }
    for (const series of spec.series) {
        for (const run of runs(series.points)) {
            const coords = run.map(([at, v]) => `${x(at).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
            const shape = run.length === 1
                ? el("circle", { cx: x(run[0][0]), cy: y(run[0][1]), r: 2.5, class: `dot ${series.cls}` })
                : el("polyline", { points: coords, class: `line ${series.cls}` });
            svg.append(shape);
        }
    }
    figure.append(svg);
    const legend = document.createElement("ul");
    legend.className = "legend";
    for (const series of spec.series) {
        const item = document.createElement("li");
        const swatch = document.createElement("span");
        swatch.className = `swatch ${series.cls}`;
        swatch.setAttribute("aria-hidden", "true");
        item.append(swatch, series.name);
        legend.append(item);
    }
    figure.append(legend);
    return figure;
}
/** The chart in words: each series' latest value and its range over the window. */
function describe(spec) {
    const parts = spec.series.map((series) => {
        const values = series.points.map(([, v]) => v).filter((v) => v !== null);
        if (!values.length)
            return `${series.name}: no data`;
        const latest = spec.format(values[values.length - 1]);
        return `${series.name}: now ${latest}, from ${spec.format(Math.min(...values))} to ${spec.format(Math.max(...values))}`;
    });
    return `${spec.title}. ${parts.join("; ")}.`;
}
