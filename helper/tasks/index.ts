/**
 * THE task table: run order, names (TASK_START/…, EXCLUDE_TASK_<Name>) and
 * attributes all come from here. Order is the original snf-image's.
 */
import type { Task } from "../task.ts";
import { task as FixPartitionTable } from "./FixPartitionTable.ts";
import { task as FilesystemResizeUnmounted } from "./FilesystemResizeUnmounted.ts";
import { task as MountImage } from "./MountImage.ts";
import { task as InitializeDatasource } from "./InitializeDatasource.ts";
import { task as InstallUnattend } from "./InstallUnattend.ts";
import { task as FilesystemResizeMounted } from "./FilesystemResizeMounted.ts";
import { task as AddSwap } from "./AddSwap.ts";
import { task as AssignHostname } from "./AssignHostname.ts";
import { task as ChangeMachineId } from "./ChangeMachineId.ts";
import { task as ChangePassword } from "./ChangePassword.ts";
import { task as AuthorizedKeys } from "./AuthorizedKeys.ts";
import { task as ConfigureNetwork } from "./ConfigureNetwork.ts";
import { task as DeleteSSHKeys } from "./DeleteSSHKeys.ts";
import { task as DisableRemoteDesktopConnections } from "./DisableRemoteDesktopConnections.ts";
import { task as SELinuxAutorelabel } from "./SELinuxAutorelabel.ts";
import { task as EnforcePersonality } from "./EnforcePersonality.ts";
import { task as RunCustomTask } from "./RunCustomTask.ts";
import { task as UmountImage } from "./UmountImage.ts";
import { task as FilesystemResizeAfterUmount } from "./FilesystemResizeAfterUmount.ts";

export const TASKS: readonly Task[] = [
  FixPartitionTable,
  FilesystemResizeUnmounted,
  MountImage,
  InitializeDatasource,
  InstallUnattend,
  FilesystemResizeMounted,
  AddSwap,
  AssignHostname,
  ChangeMachineId,
  ChangePassword,
  AuthorizedKeys,
  ConfigureNetwork,
  DeleteSSHKeys,
  DisableRemoteDesktopConnections,
  SELinuxAutorelabel,
  EnforcePersonality,
  RunCustomTask,
  UmountImage,
  FilesystemResizeAfterUmount,
];
