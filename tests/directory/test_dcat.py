"""The directory as DCAT-AP JSON-LD, read back with rdflib."""

from __future__ import annotations

import pytest
from rdflib import Graph, Literal, Namespace, URIRef
from rdflib import namespace as ns

# Module-level DefinedNamespace objects confuse pytest's collection; keep plain namespaces.
DCAT, DCTERMS, FOAF, RDF = (Namespace(str(n)) for n in (ns.DCAT, ns.DCTERMS, ns.FOAF, ns.RDF))
FREQUENCY = Namespace("http://publications.europa.eu/resource/authority/frequency/")
# rdflib's own JSON-LD parser still builds a ConjunctiveGraph internally.
pytestmark = pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")


def test_the_catalog_is_dcat_ap_json_ld_that_rdflib_loads(client, factory, directory):
    directory.dataset(keywords=["hukou", "residents"], contact={"name": "PSB data office", "email": "data@psb.example"})
    directory.dataset("CAB-MARRIAGE", "CAB", title="Marriage registrations", delivery_modes=["interface"], update_frequency="monthly")
    directory.dataset("PSB-OLD", "PSB", title="Retired records")
    client.post("/api/v1/datasets/PSB-OLD/retire", headers=directory.provider("PSB"))

    response = client.get("/api/v1/catalog.jsonld", headers=factory.caller("DATA", "citizen_portal"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")
    graph = Graph().parse(data=response.text, format="json-ld")

    [catalog] = graph.subjects(RDF['type'], DCAT.Catalog)
    datasets = set(graph.objects(catalog, DCAT.dataset))
    household = URIRef("http://localhost/api/v1/datasets/PSB-HOUSEHOLD")
    marriage = URIRef("http://localhost/api/v1/datasets/CAB-MARRIAGE")
    assert datasets == {household, marriage}
    assert (household, RDF['type'], DCAT.Dataset) in graph
    assert graph.value(household, DCTERMS.title) == Literal("Household registration")
    assert graph.value(household, DCTERMS.identifier) == Literal("PSB-HOUSEHOLD")
    assert {str(k) for k in graph.objects(household, DCAT.keyword)} >= {"hukou", "residents"}
    assert graph.value(household, DCTERMS.accrualPeriodicity) == FREQUENCY.DAILY
    assert graph.value(marriage, DCTERMS.accrualPeriodicity) == FREQUENCY.MONTHLY
    publisher = graph.value(household, DCTERMS.publisher)
    assert (publisher, RDF['type'], FOAF.Organization) in graph
    assert graph.value(publisher, FOAF.name) == Literal("PSB department")
    distributions = list(graph.objects(household, DCAT.distribution))
    assert len(distributions) == 2
    assert all((d, RDF['type'], DCAT.Distribution) in graph for d in distributions)
    assert {str(graph.value(d, DCAT.accessURL)) for d in distributions} == {
        "http://localhost/api/v1/datasets/PSB-HOUSEHOLD/versions",
        "http://localhost/api/v1/exchange/PSB-HOUSEHOLD/records",
    }
    assert len(list(graph.objects(marriage, DCAT.distribution))) == 1
    assert graph.value(household, DCTERMS.modified).datatype == URIRef("http://www.w3.org/2001/XMLSchema#dateTime")
    assert graph.value(household, DCAT.contactPoint) is not None


def test_the_catalog_needs_a_token(client):
    assert client.get("/api/v1/catalog.jsonld").status_code == 401
