/**
 * Whether a process with this pid exists (signal 0 checks without sending
 * anything). EPERM means it exists but belongs to another user. Used for the
 * pid files of the data-directory lock, the identity slots and the local
 * sidecar.
 */
export function isProcessAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
