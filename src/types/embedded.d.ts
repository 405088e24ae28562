// Files imported `with { type: "file" }` resolve to a path (inside the binary once compiled).
declare module "*.safetensors" {
  const path: string;
  export default path;
}
declare module "*.jinja" {
  const path: string;
  export default path;
}
