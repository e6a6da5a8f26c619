// The Python extension's interpreter for a folder, and its changes (when it is installed).

import * as vscode from 'vscode';

/** The Python extension's interpreter for this folder, when that extension is installed. */
export async function pythonExtensionInterpreter(resource: vscode.Uri | undefined): Promise<string | undefined> {
  const extension = vscode.extensions.getExtension('ms-python.python');
  if (!extension) {
    return undefined;
  }
  try {
    const api = (extension.isActive ? extension.exports : await extension.activate()) as {
      environments?: { getActiveEnvironmentPath(resource?: vscode.Uri): { path: string } | undefined };
      settings?: { getExecutionDetails(resource?: vscode.Uri): { execCommand?: string[] } };
    };
    const fromEnvironments = api?.environments?.getActiveEnvironmentPath(resource)?.path;
    if (fromEnvironments) {
      return fromEnvironments;
    }
    return api?.settings?.getExecutionDetails(resource)?.execCommand?.[0];
  } catch {
    return undefined;
  }
}

/** Fires when the Python extension's active interpreter changes (when it is installed). */
export async function onPythonInterpreterChange(listener: () => void): Promise<vscode.Disposable | undefined> {
  const extension = vscode.extensions.getExtension('ms-python.python');
  if (!extension) {
    return undefined;
  }
  try {
    const api = (extension.isActive ? extension.exports : await extension.activate()) as {
      environments?: { onDidChangeActiveEnvironmentPath?: vscode.Event<unknown> };
    };
    return api?.environments?.onDidChangeActiveEnvironmentPath?.(() => listener());
  } catch {
    return undefined;
  }
}
