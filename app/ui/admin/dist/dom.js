/** Small DOM helpers: every text goes in as textContent, never as HTML. */
export function byId(id) {
    const node = document.getElementById(id);
    if (!node)
        throw new Error(`#${id} is missing from the page`);
    return node;
}
export function make(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined)
        node.textContent = text;
    if (className)
        node.className = className;
    return node;
}
export function tableRow(cells, header = false) {
    const row = make("tr");
    cells.forEach((cell, index) => {
        // The first cell names the row: a row header, as screen readers announce it.
        const td = header && index === 0 ? make("th") : make("td");
        if (td instanceof HTMLTableCellElement && header && index === 0)
            td.scope = "row";
        td.append(cell);
        row.append(td);
    });
    return row;
}
/** A table with a caption and column headers, for the parts the page builds whole. */
export function table(caption, headers, rows) {
    const node = make("table");
    node.append(make("caption", caption));
    const head = make("thead");
    const headRow = make("tr");
    for (const text of headers) {
        const th = make("th", text);
        th.scope = "col";
        headRow.append(th);
    }
    head.append(headRow);
    const body = make("tbody");
    body.append(...rows);
    node.append(head, body);
    return node;
}
export function note(text) {
    return make("p", text, "no-data");
}
export function ms(value) {
    return value === null ? "—" : `${Math.round(value).toLocaleString()} ms`;
}
export function percent(value) {
    return value === null ? "—" : `${(value * 100).toFixed(value === 1 || value === 0 ? 0 : 1)}%`;
}
export function when(iso) {
    const at = new Date(iso);
    return Number.isNaN(at.getTime()) ? iso : at.toLocaleString();
}
