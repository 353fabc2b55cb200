export function render(readme: string, actionYml: string): string
export function tables(actionYml: string): {inputs: string; outputs: string}
