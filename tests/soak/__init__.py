"""A long fault-injection soak of shmimage: a mixed workload under fire.

Participants, one process each (participants.py): `Writer` (publish() of
frames with a stamp and a CRC in their pixels), `Loaner` (loan(), one in ten
cancelled), `ViewReader` (view(), arrays kept past their block, info() and
wait() generations), `CopyReader` (read()), `LosslessReader` and
`LossyReader` (subscribe()), `Churner` (SharedMemory
create/attach/lock/remove plus `ls`/`gc` through list_segments() and
collect_garbage()), `CliUser` (the `shmimage put`/`get`/`ls`/`gc` commands),
and the network bridge over 127.0.0.1: `NetServer` (shmimage.net serving the
image key), `NetRelay` (relaying it into a second key) and `RelayReader` (a
subscription to that key). The bridge joins where pyzmq is installed.
The supervisor (supervisor.py) SIGKILLs any of them at random, kills the
holder of the lock the writers stamp under on purpose (to time recovery),
SIGSTOPs and SIGCONTs them, restarts the killed ones, and runs a watchdog.

Checks: every frame handed out is complete (CRC), a cancelled loan is never
seen, stamps and generations never go back per reader, a lossless
subscription misses no generation while it lives and a lossy one counts
every skip in `dropped`, survivors' descriptors,
mappings and RSS do not grow (/proc/self/fd, /proc/self/maps, statm), no
participant stays silent past its patience, no unexpected exit (a segfault or
SIGBUS shows here), and at the end none of the run's names is left in
/dev/shm. One JSON summary says what was survived.

A new kind of participant is one `Participant` subclass in participants.py,
named in its ROSTER and in the supervisor's DEFAULT_ROSTER.

Run: `python -m tests.soak --seconds N --json OUT` or
`python tests/soak/run.py ...` from the repository root; Linux only (/proc).
SHMIMAGE_SOAK=N scales the default duration (120 s x N).
"""
