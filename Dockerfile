# qms-operator container image. (No Docker engine runs on the development machines; this file is
# for building the image in a real CI.)
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
COPY . .
# Only the operator: kube-sim and its kubelet are dev-dependencies (tests) and the playground's
# (crates/qms-dev), never linked here; tests/tests/it/image.rs reads this line and checks that.
RUN cargo build --release --locked -p qms-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/qms-operator /usr/local/bin/qms-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/qms-operator"]
CMD ["run"]
