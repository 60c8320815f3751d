"""HTTP routes of the directory: /api/v1/datasets and /api/v1/catalog.jsonld.

Bodies are plain JSON objects checked against the unified format in ``schemas/``
(the one definition of a dataset); the models here only shape the answers.
"""

# No "from __future__ import annotations": FastAPI must see the dependency closures
# in ``dataset_for_provider`` as objects, not as strings it cannot resolve.
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from directory import dcat, search, service
from directory.models import Dataset
from govshare.auth import Caller, require
from govshare.db import DbSession, release_request_session

router = APIRouter(prefix="/api/v1", tags=["directory"])

# One callable per action, so a route that also names the caller reuses the same check.
_ROLE_CHECKS = {action: require(action) for action in ("datasets.read", "datasets.write", "datasets.upload")}
Reader = Annotated[Caller, Depends(_ROLE_CHECKS["datasets.read"])]
Writer = Annotated[Caller, Depends(_ROLE_CHECKS["datasets.write"])]
Uploader = Annotated[Caller, Depends(_ROLE_CHECKS["datasets.upload"])]
DatasetBody = Annotated[dict[str, Any], Body(description="a dataset in the unified format (schemas/dataset.json)")]
PatchBody = Annotated[dict[str, Any], Body(description="a JSON merge patch (RFC 7396) of the dataset's description")]


def dataset_for_provider(action: str):
    """A dependency giving the dataset named in the path, if the caller's department provides it."""
    check_role = _ROLE_CHECKS[action]

    def _load(code: str, session: DbSession, caller: Annotated[Caller, Depends(check_role)]) -> Dataset:
        return service.ensure_own(service.get_dataset(session, code), department=caller.department)

    _load.__name__ = f"dataset_for_{action.replace('.', '_')}"
    return _load


DatasetForProvider = Annotated[Dataset, Depends(dataset_for_provider("datasets.write"))]
DatasetForUploader = Annotated[Dataset, Depends(dataset_for_provider("datasets.upload"))]


def _dataset_for_reader(code: str, session: DbSession, caller: Reader) -> Dataset:
    return service.get_dataset(session, code)


DatasetForReader = Annotated[Dataset, Depends(_dataset_for_reader)]


class SearchPage(BaseModel):
    items: list[dict[str, Any]]
    total: int
    page: int
    page_size: int
    facets: dict[str, dict[str, int]]


@router.get("/datasets", summary="Search the directory (full text, filters, facets, paging)")
def search_datasets(
    session: DbSession,
    caller: Reader,
    q: Annotated[str | None, Query(max_length=200, pattern=r"[0-9A-Za-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]",
                                      description="words in title, summary, keywords, item names and descriptions")] = None,
    department: str | None = None,
    domain: str | None = None,
    share_type: Literal["unconditional", "conditional", "none"] | None = None,
    delivery: Annotated[Literal["extract", "interface"] | None, Query(description="extract or interface")] = None,
    include_retired: bool = False,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=search.MAX_PAGE_SIZE)] = 20,
) -> SearchPage:
    result = search.search(
        session, q=q, department=department, domain=domain, share_type=share_type, delivery=delivery,
        include_retired=include_retired, page=page, page_size=page_size,
    )
    return SearchPage(
        items=[service.dataset_summary(dataset) for dataset in result.datasets],
        total=result.total, page=page, page_size=page_size, facets=result.facets,
    )


@router.post("/datasets", status_code=201, summary="Register a dataset of the caller's department")
def register_dataset(session: DbSession, caller: Writer, body: DatasetBody) -> dict[str, Any]:
    dataset = service.register_dataset(session, document=body, department=caller.department, actor=caller.actor)
    return service.dataset_view(session, dataset)


@router.get("/datasets/{code}", summary="A dataset's description, state and latest quality report")
def get_dataset(session: DbSession, dataset: DatasetForReader) -> dict[str, Any]:
    return service.dataset_view(session, dataset)


@router.put("/datasets/{code}", summary="Replace a dataset's description")
def replace_dataset(session: DbSession, dataset: DatasetForProvider, caller: Writer, body: DatasetBody) -> dict[str, Any]:
    service.replace_dataset(session, dataset=dataset, document=body, actor=caller.actor)
    return service.dataset_view(session, dataset)


@router.patch("/datasets/{code}", summary="Change some fields of a dataset's description (JSON merge patch)")
def patch_dataset(session: DbSession, dataset: DatasetForProvider, caller: Writer, body: PatchBody) -> dict[str, Any]:
    service.patch_dataset(session, dataset=dataset, patch=body, actor=caller.actor)
    return service.dataset_view(session, dataset)


@router.post("/datasets/{code}/retire", summary="Retire a dataset (it leaves search; history stays)")
def retire_dataset(session: DbSession, dataset: DatasetForProvider, caller: Writer) -> dict[str, Any]:
    service.retire_dataset(session, dataset=dataset, actor=caller.actor)
    return service.dataset_view(session, dataset)


@router.get("/datasets/{code}/history", summary="Every revision of a dataset's description")
def dataset_history(session: DbSession, dataset: DatasetForReader) -> dict[str, Any]:
    revisions = service.history(session, dataset=dataset)
    return {"dataset": dataset.code, "revisions": [service.revision_view(revision) for revision in revisions]}


@router.post("/datasets/{code}/versions", status_code=201, summary="Upload data (CSV, Parquet or JSON lines) as a new version")
def upload_version(
    request: Request, session: DbSession, dataset: DatasetForUploader, caller: Uploader, file: UploadFile
) -> dict[str, Any]:
    store, code = request.app.state.store, dataset.code
    # Checking a large file takes minutes: the request's session (and its slot) is given
    # back first, so uploads do not make other requests wait; the version is stored in a
    # short transaction of its own, refused if the dataset's items changed meanwhile.
    release_request_session(session)
    snapshot = service.check_file(dataset=dataset, source=file.file, filename=file.filename, store=store)
    with request.app.state.database.transaction() as write:
        stored_in = service.get_dataset(write, code)
        version = service.store_checked(write, dataset=stored_in, snapshot=snapshot,
                                        source_name=file.filename, store=store, actor=caller.actor)
        return {**service.version_view(version), "warnings": service.version_warnings(write, dataset=stored_in, version=version)}


@router.get("/datasets/{code}/versions", summary="Stored versions of a dataset's data, newest first")
def list_versions(session: DbSession, dataset: DatasetForReader) -> dict[str, Any]:
    versions = service.list_versions(session, dataset=dataset)
    return {"dataset": dataset.code, "versions": [service.version_view(version) for version in versions]}


@router.get("/catalog.jsonld", summary="The directory as DCAT-AP JSON-LD",
            response_class=JSONResponse, responses={200: {"content": {"application/ld+json": {"schema": {"type": "object"}}}}})
def catalog(request: Request, session: DbSession, caller: Reader) -> JSONResponse:
    base_url = request.app.state.settings.issuer
    return JSONResponse(dcat.catalog(session, base_url=base_url), media_type="application/ld+json")
