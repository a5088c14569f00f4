/* The CUDA stand-in: cudarc and dfdx look for this file under CUDA_ROOT; they ship their own bindings, so it declares nothing. */
