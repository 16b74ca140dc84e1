// CSV cells of the sweep tables: empty for missing numbers, quoted when they hold a comma, quote or newline.

export function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  const text = String(v);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
