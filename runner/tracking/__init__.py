"""Everything MLflow, split by concern so that each file reads in one sitting; nothing outside
this package imports mlflow.

- interface:   the tracking surface, as Protocols: Tracking (open runs) and RunRecord (one run)
- store:       which store, checked before any run exists; one client per store; the experiment
- sqlite_file: a sqlite store's file: its path as SQLAlchemy reads it, its lock, its checks
- record:      one run's record in this process (Tracker, Run): params, buffered metrics, tags,
               artifacts, dataset, model; what a run's params and config hash are
- service:     the trainer's side of the tracking process (Service): the same surface over
               a pipe, so that the trainer never waits on the store; one a process
- remote_run:  one run over that pipe (RemoteRun), its points handed over in batches
- process:     the tracking process itself (`python -m runner.tracking.process`): the calls it
               allows, carried out on record's Tracker and Runs, for one trainer's pipe or
               several (a warm sweep's workers)
- messages:    what goes over that pipe, typed (Call; Started, Reply, Refused)
- sweep:       the sweep's parent run, a Hydra callback in the launching process
- job_files:   the files a sweep's processes share (parent id, swept keys, each job's result)
- report:      the parent's description (jobs ranked, statistics over seeds)
- view:        the sweep's saved view in MLflow's UI
- read:        reading a store back, for `python -m runner.compare`
"""
