// The boot shims are embedded into the snf-image executable as text.
declare module "*.sh" {
  const text: string;
  export default text;
}
