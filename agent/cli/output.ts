/** How weftctl's read commands print: a table for people, JSON or YAML for programs (`-o`). */
import { stringify } from 'yaml';
import { formatTable } from '../../common/table.js';

export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** The `-o`/`--output` option of a read command; `fallback` is its default. */
export function outputOption(fallback: OutputFormat = 'table') {
  return { alias: 'o', choices: OUTPUT_FORMATS, default: fallback, describe: 'table (for people), json or yaml' } as const;
}

/** `value` as the format asks (JSON and YAML end with a newline); `table` makes the table form. */
export function render(format: OutputFormat, value: unknown, table: () => string): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(value, null, 2)}\n`;
    case 'yaml':
      return stringify(value);
    default:
      return `${table()}\n`;
  }
}

/** A JSON object as KEY / VALUE rows, nested keys joined with dots (Backend.Type), lists as JSON. */
export function keyValueTable(object: Record<string, unknown>): string {
  const rows: string[][] = [];
  const walk = (prefix: string, value: unknown): void => {
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      for (const [key, inner] of Object.entries(value)) walk(prefix === '' ? key : `${prefix}.${key}`, inner);
      return;
    }
    rows.push([prefix, typeof value === 'string' ? value : JSON.stringify(value)]);
  };
  walk('', object);
  return formatTable([['KEY', 'VALUE'], ...rows]);
}
