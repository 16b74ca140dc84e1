// `@peer/backend/webgpu`: custom WGSL programs on the webgpu engine (for packages with device kernels).
export { DEVICE_WORKGROUP, runDeviceProgram, type DeviceProgramSpec, type DeviceUniform } from './webgpu/device-program.js';
