//! CustomResourceDefinitions: serving, structural-schema checks, validation errors, defaults,
//! pruning and fieldValidation, status subresource, generation, printer-column Tables, CEL.

use crate::support;

use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn created_crd_is_established_and_served_in_discovery() {
    let sim = sim().await;
    let client = sim.client();
    install_widget_crd(&client).await;
    let crd = get(
        &client,
        &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}"),
    )
    .await
    .json();
    let conds = crd["status"]["conditions"].as_array().unwrap();
    for t in ["Established", "NamesAccepted"] {
        assert!(
            conds
                .iter()
                .any(|c| c["type"] == t && c["status"] == "True"),
            "{t}: {conds:?}"
        );
    }
    let res = get(&client, &format!("/apis/{GROUP}/v1")).await.json();
    let widgets = res["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "widgets")
        .unwrap()
        .clone();
    assert_eq!(widgets["kind"], "Widget");
    assert_eq!(widgets["namespaced"], true);
    assert_eq!(widgets["shortNames"], json!(["wg"]));
    assert_eq!(widgets["categories"], json!(["gadgetry"]));
    assert!(
        res["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "widgets/status")
    );
    let groups = get(&client, "/apis").await.json();
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == GROUP)
    );
    // Aggregated discovery (what kubectl 1.35 asks for first) lists the new group too.
    let agg = raw(
        &client,
        "GET",
        "/apis",
        None,
        None,
        Some(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        ),
    )
    .await;
    assert_eq!(
        agg.headers["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let agg = agg.json();
    let g = agg["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == GROUP)
        .unwrap()
        .clone();
    assert_eq!(g["versions"][0]["resources"][0]["resource"], "widgets");
    assert_eq!(g["versions"][0]["resources"][0]["scope"], "Namespaced");
    // And an OpenAPI v3 document generated from the schema, advertising fieldValidation.
    let index = get(&client, "/openapi/v3").await.json();
    let url = index["paths"][format!("apis/{GROUP}/v1")]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = get(&client, &url).await.json();
    let schema = &doc["components"]["schemas"]["dev.kube-sim.example.v1.Widget"];
    assert_eq!(
        schema["properties"]["spec"]["properties"]["color"]["enum"],
        json!(["red", "green", "blue"])
    );
    assert_eq!(
        schema["x-kubernetes-group-version-kind"][0]["kind"],
        "Widget"
    );
    let patch_op = &doc["paths"]
        [format!("/apis/{GROUP}/v1/namespaces/{{namespace}}/widgets/{{name}}")]["patch"];
    assert!(
        patch_op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation")
    );
}

#[tokio::test]
async fn invalid_enum_and_missing_required_are_422_naming_the_fields() {
    let sim = sim().await;
    let client = sim.client();
    install_widget_crd(&client).await;
    let api = widgets(&client, "default");
    let err = api_err(
        api.create(
            &PostParams::default(),
            &widget("x", json!({"color": "purple"})),
        )
        .await,
    );
    assert_eq!(err.code, 422);
    assert_eq!(err.reason, "Invalid");
    assert_eq!(
        err.message,
        format!(
            "Widget.{GROUP} \"x\" is invalid: spec.color: Unsupported value: \"purple\": supported values: \"red\", \"green\", \"blue\""
        )
    );
    let d = err.details.unwrap();
    assert_eq!(d.kind, "Widget");
    assert_eq!(d.group, GROUP);
    assert_eq!(d.causes[0].field, "spec.color");
    assert_eq!(d.causes[0].reason, "FieldValueNotSupported");

    let err = api_err(
        api.create(&PostParams::default(), &widget("y", json!({"size": 2})))
            .await,
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("spec.color: Required value"),
        "{}",
        err.message
    );

    let err = api_err(
        api.create(
            &PostParams::default(),
            &widget(
                "z",
                json!({"color": "red", "size": 11, "label": "ABC", "tags": ["a", "a"]}),
            ),
        )
        .await,
    );
    let fields: Vec<String> = err
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    assert!(
        fields.contains(
            &"spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
                .to_string()
        ),
        "{fields:?}"
    );
    assert!(
        fields.contains(
            &"spec.label: Invalid value: \"ABC\": spec.label in body should match '^[a-z]+$'"
                .to_string()
        ),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"spec.tags[1]: Duplicate value: \"a\"".to_string()),
        "{fields:?}"
    );

    let err = api_err(
        api.create(
            &PostParams::default(),
            &widget(
                "m",
                json!({"color": "red", "parts": [{"name": "a"}, {"name": "a"}]}),
            ),
        )
        .await,
    );
    assert_eq!(err.details.unwrap().causes[0].field, "spec.parts[1]");

    let err = api_err(
        api.create(
            &PostParams::default(),
            &widget("t", json!({"color": "red", "size": "big"})),
        )
        .await,
    );
    assert_eq!(
        err.details.unwrap().causes[0].message,
        "Invalid value: \"string\": spec.size in body must be of type integer: \"string\""
    );
}

#[tokio::test]
async fn cel_validation_rules_are_evaluated() {
    let sim = sim().await;
    let client = sim.client();
    install_widget_crd(&client).await;
    let api = widgets(&client, "default");
    api.create(
        &PostParams::default(),
        &widget("ok", json!({"color": "red", "size": 5, "minSize": 2})),
    )
    .await
    .unwrap();
    let err = api_err(
        api.create(
            &PostParams::default(),
            &widget("bad", json!({"color": "red", "size": 2, "minSize": 5})),
        )
        .await,
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("minSize must not exceed size"),
        "{}",
        err.message
    );
    assert_eq!(err.details.unwrap().causes[0].field, "spec");
}

#[tokio::test]
async fn non_structural_crds_are_rejected_with_the_reason() {
    let sim = sim().await;
    let client = sim.client();
    let mut crd = widget_crd();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("type");
    let r = post(
        &client,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &crd,
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let body = r.json();
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(
        body["details"]["causes"][0]["field"],
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].type"
    );
    assert!(
        body["message"].as_str().unwrap().contains(
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"
        ),
        "{}",
        body["message"]
    );

    let mut crd = widget_crd();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"] =
        json!({"type": "object", "properties": {"labels": {"type": "object"}}});
    let r = post(
        &client,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &crd,
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("properties[metadata]: Forbidden"),
        "{}",
        r.text
    );

    let mut crd = widget_crd();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["extra"] = json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}});
    let r = post(
        &client,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &crd,
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("additionalProperties: Forbidden"),
        "{}",
        r.text
    );

    // Nothing of it is served.
    assert_eq!(get(&client, &format!("/apis/{GROUP}/v1")).await.status, 404);
}

#[tokio::test]
async fn defaults_are_applied_and_unknown_fields_pruned() {
    let sim = sim().await;
    let client = sim.client();
    install_widget_crd(&client).await;
    let body = json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Widget", "metadata": {"name": "d"},
        "spec": {"color": "red", "bogus": 1, "extra": {"anything": {"goes": true}}}, "junk": "x"});
    let r = post(&client, &widgets_path("default"), &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let w = r.json();
    assert_eq!(w["spec"]["size"], 3, "default applied");
    assert_eq!(w["spec"]["mode"], "fast");
    assert!(w["spec"].get("bogus").is_none(), "unknown field pruned");
    assert!(w.get("junk").is_none());
    assert_eq!(
        w["spec"]["extra"],
        json!({"anything": {"goes": true}}),
        "preserve-unknown-fields kept"
    );
    // fieldValidation defaults to Warn: the unknown fields come back as Warning headers.
    let warnings: Vec<&str> = r
        .headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("unknown field \\\"spec.bogus\\\"")),
        "{warnings:?}"
    );
    let stored = get(&client, &format!("{}/d", widgets_path("default")))
        .await
        .json();
    assert_eq!(stored["spec"]["size"], 3);

    // Strict refuses them, naming each one.
    let mut strict = body.clone();
    strict["metadata"]["name"] = json!("s");
    let r = post(
        &client,
        &format!("{}?fieldValidation=Strict", widgets_path("default")),
        &strict,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let msg = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("strict decoding error: unknown field \"junk\""),
        "{msg}"
    );
    assert!(msg.contains("unknown field \"spec.bogus\""), "{msg}");
    assert_eq!(
        get(&client, &format!("{}/s", widgets_path("default")))
            .await
            .status,
        404
    );

    // Ignore: no warning.
    strict["metadata"]["name"] = json!("i");
    let r = post(
        &client,
        &format!("{}?fieldValidation=Ignore", widgets_path("default")),
        &strict,
    )
    .await;
    assert_eq!(r.status, 201);
    assert!(r.headers.get("warning").is_none());
}

#[tokio::test]
async fn status_subresource_isolation_and_generation_rules() {
    let sim = sim().await;
    let client = sim.client();
    install_widget_crd(&client).await;
    let path = format!("{}/g", widgets_path("default"));
    // status in a create is dropped when the status subresource is enabled.
    let r = post(
        &client,
        &widgets_path("default"),
        &json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Widget",
        "metadata": {"name": "g"}, "spec": {"color": "red"}, "status": {"phase": "Fake"}}),
    )
    .await;
    let w = r.json();
    assert!(w.get("status").is_none(), "{w}");
    assert_eq!(w["metadata"]["generation"], 1);

    // A status write changes status only (spec changes in it are ignored), no generation bump.
    let mut s = w.clone();
    s["status"] = json!({"phase": "Ready", "observedGeneration": 1});
    s["spec"]["color"] = json!("blue");
    s["metadata"]["labels"] = json!({"sneaky": "yes"});
    let r = put(&client, &format!("{path}/status"), &s).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let after = r.json();
    assert_eq!(after["status"]["phase"], "Ready");
    assert_eq!(after["spec"]["color"], "red");
    assert!(after["metadata"].get("labels").is_none());
    assert_eq!(after["metadata"]["generation"], 1);

    // A main-resource write ignores status; a spec change bumps generation, metadata-only doesn't.
    let mut m = after.clone();
    m["status"] = json!({"phase": "Overwritten"});
    m["metadata"]["labels"] = json!({"a": "b"});
    let after = put(&client, &path, &m).await.json();
    assert_eq!(after["status"]["phase"], "Ready");
    assert_eq!(after["metadata"]["labels"]["a"], "b");
    assert_eq!(
        after["metadata"]["generation"], 1,
        "metadata change does not bump generation"
    );
    let mut m = after.clone();
    m["spec"]["size"] = json!(7);
    let after = put(&client, &path, &m).await.json();
    assert_eq!(
        after["metadata"]["generation"], 2,
        "spec change bumps generation"
    );

    // Status patches through kube::Api.
    let api = widgets(&client, "default");
    let p = api
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Done"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.data["status"]["phase"], "Done");
    assert_eq!(p.metadata.generation, Some(2));
    // A no-op write does not change the resourceVersion.
    let again = api
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Done"}})),
        )
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, p.metadata.resource_version);
}

fn table_accept() -> Option<&'static str> {
    Some(
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
    )
}

#[tokio::test]
async fn table_output_uses_printer_columns() {
    let sim = sim().await;
    let client = sim.client();
    install_widget_crd(&client).await;
    create_widget(&client, "t1", json!({"color": "green", "size": 4})).await;
    widgets(&client, "default")
        .patch_status(
            "t1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}})),
        )
        .await
        .unwrap();
    let r = raw(
        &client,
        "GET",
        &widgets_path("default"),
        None,
        None,
        table_accept(),
    )
    .await;
    let t = r.json();
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    let names: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Name", "Color", "Size", "Ready"]);
    assert_eq!(t["rows"][0]["cells"], json!(["t1", "green", 4, "True"]));
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "t1");
    let r = raw(
        &client,
        "GET",
        &format!("{}?includeObject=None", widgets_path("default")),
        None,
        None,
        table_accept(),
    )
    .await;
    assert!(r.json()["rows"][0].get("object").is_none());
    let r = raw(
        &client,
        "GET",
        &format!("{}?includeObject=Object", widgets_path("default")),
        None,
        None,
        table_accept(),
    )
    .await;
    assert_eq!(r.json()["rows"][0]["object"]["spec"]["color"], "green");

    // Built-ins: Name first, Age last; pods show READY and STATUS.
    let pod =
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
    assert_eq!(
        post(&client, "/api/v1/namespaces/default/pods", &pod)
            .await
            .status,
        201
    );
    let t = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/pods",
        None,
        None,
        table_accept(),
    )
    .await
    .json();
    let cols: Vec<Value> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["priority"] == 0)
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(
        cols,
        vec![
            json!("Name"),
            json!("Ready"),
            json!("Status"),
            json!("Restarts"),
            json!("Age")
        ]
    );
    assert_eq!(t["rows"][0]["cells"][1], "0/1");
    assert_eq!(t["rows"][0]["cells"][2], "Pending");
    let t = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        None,
        None,
        table_accept(),
    )
    .await
    .json();
    let first = &t["columnDefinitions"][0]["name"];
    let last = t["columnDefinitions"].as_array().unwrap().last().unwrap()["name"].clone();
    assert_eq!((first.as_str(), last.as_str()), (Some("Name"), Some("Age")));
}

#[tokio::test]
async fn deleting_a_crd_removes_its_instances_and_stops_serving() {
    let sim = sim().await;
    let client = sim.client();
    install_widget_crd(&client).await;
    create_widget(&client, "w1", json!({"color": "red"})).await;
    let r = delete(
        &client,
        &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        get(
            &client,
            &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}")
        )
        .await
        .status,
        404
    );
    assert_eq!(get(&client, &widgets_path("default")).await.status, 404);
    // Re-creating starts empty.
    install_widget_crd(&client).await;
    assert_eq!(
        get(&client, &widgets_path("default")).await.json()["items"],
        json!([])
    );
}
