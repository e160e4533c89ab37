import { escapeControls } from './terminal.js';

/**
 * Rows of cells as left-aligned columns separated by two spaces (the first row is the header). Control
 * characters in a cell (text from etcd or a peer) are escaped: a cell is one line and changes nothing else.
 */
export function formatTable(cells: readonly (readonly string[])[]): string {
  const rows = cells.map((row) => row.map((cell) => escapeControls(cell)));
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
