"""The reviewer's side of a Label Studio round trip, through Label Studio's own SDK.

Run by ``.venv-labelstudio``'s Python (the SDK pins numpy and OpenCV versions the project's venv
does not have; ``labelstudio_server.sdk_round_trip`` starts it)::

    python labelstudio_sdk_client.py URL TOKEN REQUEST.json EXPORT.json

REQUEST: ``{"title", "label_config", "tasks": [...], "annotations": {"<task index>": result}}``.
Creates the project, imports the tasks, annotates the tasks named by index as a reviewer would,
and writes the project's JSON export (every task, annotated or not) to EXPORT.
"""

import json
import sys

from label_studio_sdk.client import LabelStudio


def main(url: str, token: str, request_file: str, export_file: str) -> None:
    request = json.load(open(request_file))
    client = LabelStudio(base_url=url, api_key=token)  # a legacy token: "Authorization: Token ..."
    project = client.projects.create(title=request["title"], label_config=request["label_config"])
    imported = client.projects.import_tasks(id=project.id, request=request["tasks"], return_task_ids=True)
    for index, result in request["annotations"].items():
        client.annotations.create(id=imported.task_ids[int(index)], result=result)
    chunks = client.projects.exports.download_sync(project.id, export_type="JSON", download_all_tasks=True)
    with open(export_file, "wb") as out:
        out.write(b"".join(chunks))
    print(json.dumps({"project": project.id, "tasks": imported.task_ids}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
