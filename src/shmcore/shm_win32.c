/* Windows implementation of shm_platform.h (CreateFileMapping, named mutex,
 * named event). Compiled only on Windows; see the portability notes. */
#if defined(_WIN32)
#include "shm_platform.h"
#error "the Windows backend is not written yet"
#endif
