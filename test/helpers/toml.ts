/** Small builders of test configurations (TOML text) for the spawned CLI. */

/** A pool; `health` is the body of its [health_check] table (off by default). */
export function poolToml(name: string, algorithm: string, backends: string[], extra = '', health = 'enabled = false'): string {
  return `[pools.${name}]\nalgorithm = "${algorithm}"\n${extra}\nbackends = [\n${backends.map((b) => `  ${b},`).join('\n')}\n]\n[pools.${name}.health_check]\n${health}\n`;
}

/** A TCP listener on 127.0.0.1 port 0. */
export function listenerToml(name: string, pool: string, extra = ''): string {
  return `[[listeners]]\nname = "${name}"\nbind = "127.0.0.1:0"\npool = "${pool}"\n${extra}\n`;
}
