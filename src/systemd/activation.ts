/**
 * systemd socket activation: the sockets passed as fds 3.. with LISTEN_FDS,
 * LISTEN_PID and LISTEN_FDNAMES (sd_listen_fds_with_names). A listener whose
 * name equals a FileDescriptorName= uses the inherited socket instead of
 * binding. The variables are removed from the environment once read, so
 * child processes do not inherit them.
 */
export const SD_LISTEN_FDS_START = 3;

/** Names → fds, or an empty map when nothing was passed to this process. */
export function inheritedSockets(env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): Map<string, number> {
  const out = new Map<string, number>();
  const count = Number(env.LISTEN_FDS ?? '');
  const forPid = Number(env.LISTEN_PID ?? '');
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  delete env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDNAMES;
  if (!Number.isInteger(count) || count <= 0 || forPid !== pid) return out;
  for (let i = 0; i < count; i++) {
    const name = names[i] || `fd${SD_LISTEN_FDS_START + i}`;
    out.set(name, SD_LISTEN_FDS_START + i);
  }
  return out;
}
