"""The directory as DCAT-AP JSON-LD: a dcat:Catalog of dcat:Dataset with their distributions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from directory.models import Dataset
from govshare.models import Department

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
FREQUENCY = "http://publications.europa.eu/resource/authority/frequency/"
ACCESS_RIGHTS = "http://publications.europa.eu/resource/authority/access-right/"
FILE_TYPE = "http://publications.europa.eu/resource/authority/file-type/"
FREQUENCIES = {
    "realtime": "UPDATE_CONT", "daily": "DAILY", "weekly": "WEEKLY", "monthly": "MONTHLY",
    "quarterly": "QUARTERLY", "yearly": "ANNUAL", "irregular": "IRREG",
}
OPEN_TYPES = {"open": "PUBLIC", "conditional": "RESTRICTED", "closed": "NON_PUBLIC"}


def _datetime(value: Any) -> dict[str, str]:
    return {"@value": value.isoformat(), "@type": "xsd:dateTime"}


def dataset_node(dataset: Dataset, *, base_url: str, publisher_name: str) -> dict[str, Any]:
    """One dcat:Dataset with its publisher, keywords, frequency and distributions."""
    document = dataset.document
    dataset_url = f"{base_url}/api/v1/datasets/{dataset.code}"
    node: dict[str, Any] = {
        "@id": dataset_url,
        "@type": "dcat:Dataset",
        "dct:identifier": dataset.code,
        "dct:title": dataset.title,
        "dct:description": document["summary"],
        "dct:publisher": {
            "@id": f"{base_url}/api/v1/departments/{dataset.department_code}",
            "@type": "foaf:Organization",
            "foaf:name": publisher_name,
            "dct:identifier": dataset.department_code,
        },
        "dcat:keyword": [*document.get("keywords", []), dataset.domain],
        "dcat:theme": {"@id": f"{base_url}/api/v1/domains/{dataset.domain}"},
        "dct:accrualPeriodicity": {"@id": FREQUENCY + FREQUENCIES[dataset.update_frequency]},
        "dct:accessRights": {"@id": ACCESS_RIGHTS + OPEN_TYPES[dataset.open_type]},
        "dct:issued": _datetime(dataset.created_at),
        "dct:modified": _datetime(dataset.updated_at),
        "dcat:distribution": [],
    }
    if document.get("legal_basis"):
        node["dct:conformsTo"] = {"@type": "dct:Standard", "dct:title": document["legal_basis"]}
    if document.get("restriction_basis") or document.get("share_conditions"):
        node["dct:rights"] = {
            "@type": "dct:RightsStatement",
            "dct:description": " ".join(filter(None, [document.get("share_conditions"), document.get("restriction_basis")])),
        }
    if contact := document.get("contact"):
        point: dict[str, Any] = {"@type": "vcard:Kind", "vcard:fn": contact["name"]}
        if contact.get("email"):
            point["vcard:hasEmail"] = {"@id": f"mailto:{contact['email']}"}
        if contact.get("phone"):
            point["vcard:hasTelephone"] = contact["phone"]
        node["dcat:contactPoint"] = point
    if related := document.get("related"):
        node["dct:relation"] = [{"@id": f"{base_url}/api/v1/datasets/{code}"} for code in related]
    if "extract" in document["delivery_modes"]:
        node["dcat:distribution"].append({
            "@id": f"{dataset_url}#extract",
            "@type": "dcat:Distribution",
            "dct:title": f"{dataset.title}: table extract",
            "dcat:accessURL": {"@id": f"{dataset_url}/versions"},
            "dct:format": {"@id": FILE_TYPE + "PARQUET"},
            "dcat:mediaType": "application/vnd.apache.parquet",
        })
    if "interface" in document["delivery_modes"]:
        node["dcat:distribution"].append({
            "@id": f"{dataset_url}#interface",
            "@type": "dcat:Distribution",
            "dct:title": f"{dataset.title}: query interface",
            "dcat:accessURL": {"@id": f"{base_url}/api/v1/exchange/{dataset.code}/records"},
            "dcat:accessService": {
                "@type": "dcat:DataService",
                "dcat:endpointURL": {"@id": f"{base_url}/api/v1/exchange/{dataset.code}/records"},
            },
            "dcat:mediaType": "application/json",
        })
    return node


def catalog(session: Session, *, base_url: str) -> dict[str, Any]:
    """The whole directory (active datasets) as one dcat:Catalog."""
    names = dict(session.execute(select(Department.code, Department.name)).all())
    datasets: Iterable[Dataset] = session.execute(
        select(Dataset).where(Dataset.status == "active").order_by(Dataset.code).execution_options(yield_per=1000)
    ).scalars()
    return {
        "@context": CONTEXT,
        "@id": f"{base_url}/api/v1/catalog.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": "govshare resource directory",
        "dct:description": "Data resources that government departments share through govshare",
        "dct:publisher": {"@id": base_url, "@type": "foaf:Organization", "foaf:name": "govshare exchange"},
        "dcat:dataset": [
            dataset_node(dataset, base_url=base_url, publisher_name=names.get(dataset.department_code, dataset.department_code))
            for dataset in datasets
        ],
    }
