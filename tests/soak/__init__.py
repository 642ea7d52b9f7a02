"""A long fault-injection soak of shmimage: a mixed workload under fire.

Participants, one process each (participants.py): `Writer` (publish() of
frames with a stamp and a CRC in their pixels), `Loaner` (loan(), one in ten
cancelled), `ViewReader` (view(), arrays kept past their block, info() and
wait() generations), `CopyReader` (read()), `Churner` (SharedMemory
create/attach/lock/remove plus `ls`/`gc` through list_segments() and
collect_garbage()) and `CliUser` (the `shmimage put`/`get`/`ls`/`gc` commands).
The supervisor (supervisor.py) SIGKILLs any of them at random, kills the
holder of the lock the writers stamp under on purpose (to time recovery),
SIGSTOPs and SIGCONTs them, restarts the killed ones, and runs a watchdog.

Checks: every frame handed out is complete (CRC), a cancelled loan is never
seen, stamps and generations never go back per reader, survivors' descriptors,
mappings and RSS do not grow (/proc/self/fd, /proc/self/maps, statm), no
participant stays silent past its patience, no unexpected exit (a segfault or
SIGBUS shows here), and at the end none of the run's names is left in
/dev/shm. One JSON summary says what was survived.

Later participants (a lossless subscriber once streams exist, the network
bridge once it exists) are one `Participant` subclass each in participants.py,
named in its ROSTER and in the supervisor's DEFAULT_ROSTER.

Run: `python -m tests.soak --seconds N --json OUT` or
`python tests/soak/run.py ...` from the repository root; Linux only (/proc).
SHMIMAGE_SOAK=N scales the default duration (120 s x N).
"""
