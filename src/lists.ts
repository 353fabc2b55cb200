import {parse} from 'csv-parse/sync'

// List inputs as docker's own actions read them: items split on newlines and
// on commas outside double quotes; spaces around items, blank lines and
// empty items are dropped. `newlinesOnly` keeps commas inside values, for
// inputs such as build-args where `NO_PROXY=a,b` is one item.

export function parseList(text: string, newlinesOnly = false): string[] {
  if (newlinesOnly) {
    return text
      .split(/\r?\n/)
      .map(line => line.trim())
      .filter(Boolean)
  }
  const records: string[][] = parse(text, {
    columns: false,
    relax_quotes: true,
    relax_column_count: true,
    skip_empty_lines: true,
    trim: true
  })
  return records
    .flat()
    .map(item => item.trim())
    .filter(Boolean)
}
