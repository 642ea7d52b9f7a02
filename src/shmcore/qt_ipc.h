/* The operating-system calls behind Qt's QSharedMemory and QSystemSemaphore,
 * so shmimage can share segments with real Qt programs.
 *
 * Every function returns 0 or an errno value (Windows errors are mapped to
 * errno values in compat.h). A timeout (in nanoseconds) below 0 waits forever; a wait that times out
 * returns ETIMEDOUT. Calls for a mechanism the platform lacks return ENOSYS,
 * so one module builds everywhere.
 */
#ifndef QT_IPC_H
#define QT_IPC_H

#include <stddef.h>
#include <stdint.h>

#if !defined(_WIN32)
/* Key files and ftok (System V keys). */
int qtipc_key_file(const char *path, int *created);
int qtipc_ftok(const char *path, int proj, long *key);
int qtipc_unlink(const char *path);

/* System V shared memory. */
int qtipc_sysv_shm_get(long key, size_t size, int create, int *id);
int qtipc_sysv_shm_attach(int id, int readonly, void **addr, size_t *size);
int qtipc_sysv_shm_detach(const void *addr);
int qtipc_sysv_shm_nattch(int id, unsigned long *nattch);
int qtipc_sysv_shm_remove(int id);

/* System V semaphore set of one, used with SEM_UNDO. `created` tells whether
 * this call made it (then it is initialised to 1). */
int qtipc_sysv_sem_get(long key, int *id, int *created);
int qtipc_sysv_sem_find(long key, int *id); /* never creates */
int qtipc_sysv_sem_op(int id, int delta, int64_t timeout_ns);
int qtipc_sysv_sem_remove(int id);

/* POSIX shared memory ("/name"). */
int qtipc_posix_shm_create(const char *name, size_t size, int *fd);
int qtipc_posix_shm_open(const char *name, int readonly, int *fd);
int qtipc_posix_shm_unlink(const char *name);
int qtipc_fd_size(int fd, size_t *size);
int qtipc_fd_map(int fd, size_t size, int readonly, void **addr);
int qtipc_unmap(void *addr, size_t size);
int qtipc_fd_close(int fd);

/* POSIX named semaphore ("/name"). With `create`, an existing one is unlinked
 * and made anew (Qt's QSystemSemaphore::Create); without, an existing one is
 * opened and a missing one made. `created` tells whether this call made it. */
int qtipc_psem_open(const char *name, int create, void **sem, int *created);
int qtipc_psem_wait(void *sem, int64_t timeout_ns);
int qtipc_psem_post(void *sem);
int qtipc_psem_close(void *sem);
int qtipc_psem_unlink(const char *name);

#endif

#if defined(_WIN32)
/* Windows named file mappings and semaphores (names in UTF-8). */
int qtipc_win_shm_create(const char *name, size_t size, void **handle);
int qtipc_win_shm_open(const char *name, int readonly, void **handle);
int qtipc_win_map(void *handle, int readonly, void **addr, size_t *size);
int qtipc_win_unmap(void *addr);
int qtipc_win_sem_open(const char *name, void **handle);
int qtipc_win_sem_wait(void *handle, int64_t timeout_ns);
int qtipc_win_sem_post(void *handle);
int qtipc_win_close(void *handle);

#endif

/* The other platform's calls answer ENOSYS (compat.h). */
#include "compat.h"

#endif /* QT_IPC_H */
