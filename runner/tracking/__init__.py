"""Everything MLflow, split by concern so that each file reads in one sitting; nothing outside
this package imports mlflow.

- store:  which store, checked before any run exists; one client per store; the experiment
- record: one run's record (params, buffered metrics, tags, artifacts, dataset, model)
- sweep:  the sweep's parent run, a Hydra callback in the launching process
- job_files: the files a sweep's processes share (parent id, swept keys, each job's result)
- report: the parent's description (jobs ranked, statistics over seeds)
- view:   the sweep's saved view in MLflow's UI
- read:   reading a store back, for `python -m runner.compare`
"""
