"""The sweep's saved view in MLflow's UI (its "Views" menu): what the experiment page shows."""
import json
import time
from typing import Any, Dict, List


def saved_view(name: str, parent_id: str, params: List[str]) -> Dict[str, Any]:
    """The UI state MLflow 3.17's experiment page keeps in a `mlflow.sharedViewState.*` tag."""
    section = "sec-sweep"
    # first every job's loss curve overlaid, on a log axis (losses here span decades)
    charts = [{"uuid": "curves", "type": "LINE", "runsCountToCompare": 100, "metricSectionId": section,
               "deleted": False, "isGenerated": False, "metricKey": "loss", "selectedMetricKeys": ["loss"],
               "scaleType": "log", "xAxisKey": "step", "xAxisScaleType": "linear", "lineSmoothness": 0,
               "range": {}, "displayPoints": False}]
    charts += [{"uuid": f"scatter-{p}", "type": "SCATTER", "runsCountToCompare": 100, "metricSectionId": section,
               "deleted": False, "isGenerated": False, "xaxis": {"key": p, "type": "PARAM"},
               "yaxis": {"key": "final_loss", "type": "METRIC"}} for p in params]
    charts.append({"uuid": "parallel", "type": "PARALLEL", "runsCountToCompare": 100, "metricSectionId": section,
                   "deleted": False, "isGenerated": False, "selectedParams": params,
                   "selectedMetrics": ["final_loss"], "showAllRuns": True})
    state = {"orderByKey": "metrics.`final_loss`", "orderByAsc": True,
             "searchFilter": f"tags.`mlflow.parentRunId` = '{parent_id}'",
             "selectedColumns": [f"params.`{p}`" for p in params] + ["metrics.`final_loss`",
                                                                   "attributes.`Dataset`", "attributes.`Models`"],
             "runsHiddenMode": "SHOW_ALL",
             "compareRunSections": [{"uuid": section, "name": "The sweep: loss curves; final_loss against what it varies",
                                     "display": True, "isReordered": False, "deleted": False, "isGenerated": False}],
             "compareRunCharts": charts}
    now = int(time.time() * 1000)
    return {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
